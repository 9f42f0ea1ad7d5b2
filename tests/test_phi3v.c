/* Tests of the Phi-3.5-V (VLM2Vec-Full, architecture phi3_v) runtime pieces (docs/model.md#phi-35-v):
 * the CLIP tower, the HD token layout and projection, the su/longrope rotary tables (short and long
 * factor sets), the decoder with the long factors forced on a config variant against a naive
 * double-precision implementation written here, the processor's prompt assembly (<s> per chunk) and
 * the abc_embed_tokens contract for phi3_v, against the tiny fixture's reference arrays.
 *
 * Needs build/tiny-phi3v.abc (`make test` converts tests/fixtures/phi35v-tiny first; ABC_PHI3V_MODEL
 * overrides the path) and the reference arrays in tests/fixtures/phi35v-tiny/runtime/ (copies of the
 * fixture's files; img_rocket_qry__pixel_values_slot0.npy is slot 0, the global view, of its
 * pixel_values). The end-to-end CLI runs of all four cases are tests/test_phi3v.sh. */
#include "../abc.c"

#include "npy.h"
#include "test.h"
#include "abc_file_patch.h"

#define FIX "tests/fixtures/phi35v-tiny/runtime/"

static abc_model *g_model;

/* The fixture's config.json rope_scaling (type su). */
static const float SHORT_FACTOR[8] = {1.007466f, 1.046898f, 1.015066f, 1.044469f,
                                      1.031341f, 1.049332f, 1.036035f, 1.028889f};
static const float LONG_FACTOR[8] = {1.011527f, 6.665916f, 13.052607f, 17.832673f,
                                     25.265248f, 31.104862f, 37.081567f, 42.425599f};

/* ---- helpers ---- */

static bool load(const char *case_name, const char *array, test_npy *out) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s__%s.npy", case_name, array);
    return test_npy_read(path, out) == 0;
}

/* The reference's int64 ids as int32. */
static int32_t *ids_of(const test_npy *a) {
    int32_t *ids = malloc(a->count * sizeof *ids);
    for (size_t i = 0; i < a->count; i++)
        ids[i] = a->dtype == 'l' ? (int32_t)((int64_t *)a->data)[i] : ((int32_t *)a->data)[i];
    return ids;
}

/* ---- the image token count and the HD layout ---- */

static void test_image_token_count(void) {
    const clip_config *c = &phi3v_of(g_model)->clip;
    CHECK(c->grid == 24 && c->hidden == 32 && c->n_layers == 2, "tiny CLIP: grid %d width %d layers %d", c->grid,
          c->hidden, c->n_layers);
    /* the fixture's cases (manifest n_image_tokens) and the formula (h·w + 1)·144 + 1 + (h + 1)·12 */
    CHECK(hd_image_token_count(c, 2, 2) == 757, "2x2: %lld", (long long)hd_image_token_count(c, 2, 2));
    CHECK(hd_image_token_count(c, 1, 2) == 457, "1x2: %lld", (long long)hd_image_token_count(c, 1, 2));
    CHECK(hd_image_token_count(c, 1, 1) == 313, "1x1");
    CHECK(hd_image_token_count(c, 4, 4) == 17 * 144 + 1 + 5 * 12, "4x4");
}

/* hd_layout against the transformers reshapes spelled out as loops over the output order:
 * sub [B,H,H,C] → [B,H/2,2,H/2,2,C] → permute(0,1,3,2,4,5) → [B,(H/2)²,4C] → [h,w,12,12,4C] →
 * permute(0,1,3,2,4,5) → [h·12, w·12, 4C], sub_GN appended to every row; glb_GN; the global view's
 * [12,12,4C] likewise with sub_GN per row. */
static void test_hd_layout(void) {
    clip_config c = {0};
    c.hidden = 3;
    c.grid = 6; /* 3×3 merged tokens per view */
    const int h = 2, w = 3, side = 3, C = 3, W4 = 4 * C, slots = 1 + h * w, P = c.grid * c.grid;
    float *features = malloc((size_t)slots * P * C * sizeof *features);
    for (int s = 0; s < slots; s++)
        for (int p = 0; p < P; p++)
            for (int ch = 0; ch < C; ch++) features[((size_t)s * P + p) * C + ch] = (float)(s * 10000 + p * 10 + ch);
    float sub[12], glb[12];
    for (int k = 0; k < W4; k++) sub[k] = -1.0f - (float)k, glb[k] = -100.0f - (float)k;
    clip_config real = c;
    const int64_t n = hd_image_token_count(&real, h, w);
    CHECK(n == (int64_t)(h * w + 1) * side * side + 1 + (h + 1) * side, "count %lld", (long long)n);
    float *got = malloc((size_t)n * W4 * sizeof *got), *want = malloc((size_t)n * W4 * sizeof *want);
    hd_layout(&c, features, h, w, sub, glb, got);

    float *o = want;
    for (int hi = 0; hi < h; hi++)
        for (int r = 0; r < side; r++) {
            for (int wi = 0; wi < w; wi++)
                for (int cc = 0; cc < side; cc++)
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++)
                            for (int ch = 0; ch < C; ch++) {
                                const int slot = 1 + hi * w + wi, patch = (2 * r + dy) * c.grid + 2 * cc + dx;
                                *o++ = features[((size_t)slot * P + patch) * C + ch];
                            }
            for (int k = 0; k < W4; k++) *o++ = sub[k];
        }
    for (int k = 0; k < W4; k++) *o++ = glb[k];
    for (int r = 0; r < side; r++) {
        for (int cc = 0; cc < side; cc++)
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    for (int ch = 0; ch < C; ch++) *o++ = features[(size_t)((2 * r + dy) * c.grid + 2 * cc + dx) * C + ch];
        for (int k = 0; k < W4; k++) *o++ = sub[k];
    }
    CHECK(o - want == n * W4, "independent layout wrote %lld floats, expected %lld", (long long)(o - want),
          (long long)(n * W4));
    size_t bad = 0, first = 0;
    for (int64_t i = 0; i < n * W4; i++)
        if (got[i] != want[i] && bad++ == 0) first = (size_t)i;
    CHECK(bad == 0, "%zu floats differ, first at %zu: %g vs %g", bad, first, got[first], want[first]);
    /* spot checks: the first token is crop (0,0)'s patches 0, 1, 6, 7; the sub-grid row ends with sub_GN */
    CHECK(got[0] == 10000 && got[C] == 10010 && got[2 * C] == 10060 && got[3 * C] == 10070, "first token");
    CHECK(got[(size_t)(w * side) * W4] == -1.0f, "sub_GN after the first stitched row");
    free(features);
    free(got);
    free(want);
}

/* ---- CLIP and the projection against the fixture ---- */

/* CLIP on slot 0 (the global view) of the rocket case against its clip_patch_features[0]. */
static void test_clip_global_view(void) {
    test_npy pv, ref;
    if (!load("img_rocket_qry", "pixel_values_slot0", &pv) || !load("img_rocket_qry", "clip_patch_features", &ref)) {
        CHECK(false, "fixture arrays missing");
        return;
    }
    const clip_config *c = &phi3v_of(g_model)->clip;
    const size_t P = (size_t)c->grid * c->grid;
    CHECK(pv.count == (size_t)3 * 336 * 336 && ref.shape[1] == (int64_t)P && ref.shape[2] == c->hidden, "shapes");
    thread_pool *pool = NULL;
    CHECK(thread_pool_new(3, &pool) == ABC_OK, "pool");
    workspace ws = {0};
    float *features = malloc(P * c->hidden * sizeof *features);
    abc_error err = {0};
    CHECK(clip_forward(pool, c, &phi3v_of(g_model)->clip_w, pv.data, 1, &ws, features, &err) == ABC_OK, "%s", err.message);
    test_diff d = test_compare_f32(features, ref.data, P * c->hidden);
    printf("  clip_patch_features (rocket, global view): max|d| %.3g, max|ref| %.3g\n", d.max_abs, d.max_ref);
    CHECK(d.max_abs <= 1e-4 * d.max_ref, "max|d| %.3g > 1e-4 * %.3g", d.max_abs, d.max_ref);
    free(features);
    workspace_free(&ws);
    thread_pool_free(pool);
    test_npy_free(&pv);
    test_npy_free(&ref);
}

/* The page case (1×2 crops; its image is not in the repository) from its reference CLIP features:
 * HD layout + projection → image_features, the decoder → last_hidden_state, pooling → embedding. */
static void test_page_from_clip_features(void) {
    test_npy clip, feats, ids_ref, embeds, hidden, emb;
    if (!load("img_page_tgt", "clip_patch_features", &clip) || !load("img_page_tgt", "image_features", &feats) ||
        !load("img_page_tgt", "input_ids", &ids_ref) || !load("img_page_tgt", "inputs_embeds", &embeds) ||
        !load("img_page_tgt", "last_hidden_state", &hidden) || !load("img_page_tgt", "embedding", &emb)) {
        CHECK(false, "fixture arrays missing");
        return;
    }
    const abc_model *m = g_model;
    const int H = m->text.hidden;
    const int64_t n = hd_image_token_count(&phi3v_of(m)->clip, 1, 2), L = (int64_t)ids_ref.count;
    CHECK(feats.shape[0] == n && feats.shape[1] == H, "image_features shape");
    thread_pool *pool = NULL;
    CHECK(thread_pool_new(2, &pool) == ABC_OK, "pool");
    workspace ws = {0};
    abc_error err = {0};
    float *image = malloc((size_t)n * H * sizeof *image), *x = malloc((size_t)L * H * sizeof *x);
    CHECK(hd_project(pool, &phi3v_of(m)->clip, &phi3v_of(m)->clip_w, clip.data, 1, 2, &ws, image, &err) == ABC_OK, "%s", err.message);
    test_diff d = test_compare_f32(image, feats.data, (size_t)n * H);
    printf("  image_features (page): max|d| %.3g, max|ref| %.3g\n", d.max_abs, d.max_ref);
    CHECK(d.max_abs <= 1e-4 * d.max_ref, "image_features max|d| %.3g", d.max_abs);

    int32_t *ids = ids_of(&ids_ref);
    int32_t *pos = malloc((size_t)L * sizeof *pos);
    for (int64_t i = 0; i < L; i++) pos[i] = (int32_t)i;
    language_embed_inputs(&m->text, &m->text_w, ids, L, image, n, x);
    d = test_compare_f32(x, embeds.data, (size_t)L * H);
    CHECK(d.max_abs <= 1e-4 * d.max_ref, "inputs_embeds max|d| %.3g", d.max_abs);
    const int64_t span[2] = {0, L};
    const sequence_spans spans = {span, 1};
    CHECK(language_decode(pool, &m->text, &m->text_w, &spans, pos, ADAPTER_NONE, &ws, x, &err) == ABC_OK, "%s", err.message);
    d = test_compare_f32(x, hidden.data, (size_t)L * H);
    printf("  last_hidden_state (page): max|d| %.3g, max|ref| %.3g\n", d.max_abs, d.max_ref);
    CHECK(d.max_abs <= 5e-4 * d.max_ref, "last_hidden_state max|d| %.3g", d.max_abs);
    float out[64];
    memcpy(out, x + (L - 1) * H, sizeof out);
    l2_normalize(out, H);
    d = test_compare_f32(out, emb.data, (size_t)H);
    CHECK(d.cosine >= 0.99999 && d.max_abs <= 1e-4, "embedding cos %.9f max|d| %.3g", d.cosine, d.max_abs);
    free(ids);
    free(pos);
    free(image);
    free(x);
    workspace_free(&ws);
    thread_pool_free(pool);
    test_npy *all[] = {&clip, &feats, &ids_ref, &embeds, &hidden, &emb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) test_npy_free(all[i]);
}

/* ---- su / longrope rotary tables ---- */

/* text_rotary_tables against double precision: inv_freq_j = 1/(factor_j · θ^(2j/d)), angle = p·inv_freq_j,
 * cos/sin · sqrt(1 + ln(max/orig)/ln(orig)); factor = long exactly when L > orig. */
static void check_tables(const text_config *c, int64_t L, const float *factors, double scale) {
    const int half = c->head_dim / 2;
    int32_t *pos = calloc((size_t)L, sizeof *pos);
    float *cs = malloc((size_t)L * half * sizeof *cs), *sn = malloc((size_t)L * half * sizeof *sn);
    for (int64_t i = 0; i < L; i++) pos[i] = (int32_t)i;
    text_rotary_tables(c, pos, L, cs, sn);
    double worst = 0;
    for (int64_t p = 0; p < L; p++)
        for (int j = 0; j < half; j++) {
            const double inv = 1.0 / ((double)factors[j] * pow(c->rope_theta, 2.0 * j / c->head_dim));
            const double angle = (double)p * inv;
            /* float32 angles carry ~2 ulp of relative error; allow for it */
            const double tol = 2e-6 + 4e-7 * angle * scale;
            const double dc = fabs(cs[p * half + j] - cos(angle) * scale), ds = fabs(sn[p * half + j] - sin(angle) * scale);
            worst = test_max(worst, test_max(dc, ds) / tol);
        }
    CHECK(worst <= 1.0, "L %lld: worst error %.3g of the tolerance", (long long)L, worst);
    free(pos);
    free(cs);
    free(sn);
}

static text_config su_config(int64_t original, int64_t longest) {
    text_config c = {0};
    c.head_dim = 16;
    c.rope_theta = 10000.0;
    c.mrope_section[0] = 8;
    c.rope_short_factor = SHORT_FACTOR;
    c.rope_long_factor = LONG_FACTOR;
    c.rope_original_max_positions = original;
    c.rope_max_positions = longest;
    return c;
}

static void test_su_rope_tables(void) {
    const text_config c = su_config(4096, 131072);
    const double scale = sqrt(1.0 + log(32.0) / log(4096.0));
    CHECK(fabs(rope_su_attention_factor(&c) - 1.190238) < 1e-6, "attention factor %.7f", rope_su_attention_factor(&c));
    CHECK(rope_su_factors(&c, 4096) == SHORT_FACTOR && rope_su_factors(&c, 4097) == LONG_FACTOR, "factor choice at 4096");
    check_tables(&c, 21, SHORT_FACTOR, scale);
    check_tables(&c, 4096, SHORT_FACTOR, scale);
    check_tables(&c, 4100, LONG_FACTOR, scale);
    /* no extension (max ≤ original): no scaling */
    const text_config plain = su_config(4096, 4096);
    CHECK(rope_su_attention_factor(&plain) == 1.0f, "no scaling when max == original");
    check_tables(&plain, 30, SHORT_FACTOR, 1.0);
    /* the model file's factors are the fixture config's */
    const text_config *m = &g_model->text;
    CHECK(m->rope_short_factor && m->rope_long_factor && m->rope_original_max_positions == 4096 &&
              m->rope_max_positions == 131072, "model rope metadata");
    for (int j = 0; j < 8 && m->rope_short_factor; j++)
        CHECK(m->rope_short_factor[j] == SHORT_FACTOR[j] && m->rope_long_factor[j] == LONG_FACTOR[j], "factor %d", j);
}

/* ---- the decoder, naively in double ---- */

typedef struct {
    double *data;
    int64_t rows, cols;
} dmat;

static dmat weight_of(const linear_layer *l) {
    dmat m = {malloc((size_t)(l->out * l->in) * sizeof(double)), l->out, l->in};
    float *row = malloc((size_t)l->in * sizeof *row);
    for (int64_t r = 0; r < l->out; r++) {
        tensor_row_f32(l->weight, r, row);
        for (int64_t k = 0; k < l->in; k++) m.data[r * l->in + k] = row[k];
    }
    free(row);
    return m;
}

/* y[L][rows] = x[L][cols] · Wᵀ */
static void naive_linear(const linear_layer *l, const double *x, int64_t L, double *y) {
    dmat W = weight_of(l);
    for (int64_t i = 0; i < L; i++)
        for (int64_t r = 0; r < W.rows; r++) {
            double s = 0;
            for (int64_t k = 0; k < W.cols; k++) s += x[i * W.cols + k] * W.data[r * W.cols + k];
            y[i * W.rows + r] = s;
        }
    free(W.data);
}

static void naive_rms_norm(const double *x, const float *w, int64_t L, int H, double eps, double *y) {
    for (int64_t i = 0; i < L; i++) {
        double ss = 0;
        for (int k = 0; k < H; k++) ss += x[i * H + k] * x[i * H + k];
        const double inv = 1.0 / sqrt(ss / H + eps);
        for (int k = 0; k < H; k++) y[i * H + k] = x[i * H + k] * inv * w[k];
    }
}

/* Phi-3's decoder on ids with 1-D positions, su RoPE with the factor set a sequence of L chosen by
 * L > original (the model's max/original scaling), causal softmax attention; out [L][H] after the final
 * norm. Written from the formulas, sharing nothing with the runtime but tensor_row_f32. */
static void naive_phi3_decoder(const text_config *c, const text_weights *w, const int32_t *ids, int64_t L,
                               double *out) {
    const int H = c->hidden, hd = c->head_dim, half = hd / 2, nh = c->n_heads, I = c->intermediate;
    const float *factors = L > c->rope_original_max_positions ? c->rope_long_factor : c->rope_short_factor;
    const double ratio = (double)c->rope_max_positions / (double)c->rope_original_max_positions;
    const double mscale = ratio <= 1.0 ? 1.0 : sqrt(1.0 + log(ratio) / log((double)c->rope_original_max_positions));
    double *x = out, *h = malloc((size_t)L * H * sizeof *h), *q = malloc((size_t)L * H * sizeof *q),
           *k = malloc((size_t)L * H * sizeof *k), *v = malloc((size_t)L * H * sizeof *v),
           *att = malloc((size_t)L * H * sizeof *att), *o = malloc((size_t)L * H * sizeof *o),
           *g = malloc((size_t)L * I * sizeof *g), *u = malloc((size_t)L * I * sizeof *u),
           *score = malloc((size_t)L * sizeof *score);
    float *row = malloc((size_t)H * sizeof *row);
    for (int64_t i = 0; i < L; i++) {
        tensor_row_f32(w->embed_tokens, ids[i], row);
        for (int j = 0; j < H; j++) x[i * H + j] = row[j];
    }
    for (int layer = 0; layer < c->n_layers; layer++) {
        const text_layer *l = &w->layers[layer];
        naive_rms_norm(x, l->input_norm, L, H, c->rms_eps, h);
        naive_linear(&l->q, h, L, q);
        naive_linear(&l->k, h, L, k);
        naive_linear(&l->v, h, L, v);
        for (int64_t p = 0; p < L; p++)
            for (int head = 0; head < nh; head++)
                for (int j = 0; j < half; j++) {
                    const double inv = 1.0 / (factors[j] * pow(c->rope_theta, 2.0 * j / hd));
                    const double cs = cos(p * inv) * mscale, sn = sin(p * inv) * mscale;
                    double *vecs[2] = {q + p * H + head * hd, k + p * H + head * hd};
                    for (int t = 0; t < 2; t++) {
                        const double a = vecs[t][j], b = vecs[t][j + half];
                        vecs[t][j] = a * cs - b * sn;
                        vecs[t][j + half] = b * cs + a * sn;
                    }
                }
        for (int head = 0; head < nh; head++)
            for (int64_t i = 0; i < L; i++) {
                double top = -1e300, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[i * H + head * hd + d] * k[j * H + head * hd + d];
                    score[j] = s / sqrt((double)hd);
                    top = test_max(top, score[j]);
                }
                for (int64_t j = 0; j <= i; j++) sum += (score[j] = exp(score[j] - top));
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j <= i; j++) acc += score[j] * v[j * H + head * hd + d];
                    att[i * H + head * hd + d] = acc / sum;
                }
            }
        naive_linear(&l->o, att, L, o);
        for (int64_t i = 0; i < L * H; i++) x[i] += o[i];
        naive_rms_norm(x, l->post_attn_norm, L, H, c->rms_eps, h);
        naive_linear(&l->gate, h, L, g);
        naive_linear(&l->up, h, L, u);
        for (int64_t i = 0; i < L * I; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        naive_linear(&l->down, g, L, o);
        for (int64_t i = 0; i < L * H; i++) x[i] += o[i];
    }
    naive_rms_norm(x, w->final_norm, L, H, c->rms_eps, h);
    memcpy(x, h, (size_t)L * H * sizeof *x);
    free(h), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(score), free(row);
}

/* The runtime's decoder (language_embed_inputs + language_decode) on a text case under config c. */
static float *runtime_decoder(const text_config *c, const int32_t *ids, int64_t L) {
    thread_pool *pool = NULL;
    CHECK(thread_pool_new(2, &pool) == ABC_OK, "pool");
    workspace ws = {0};
    abc_error err = {0};
    float *x = malloc((size_t)L * c->hidden * sizeof *x);
    int32_t *pos = malloc((size_t)L * sizeof *pos);
    for (int64_t i = 0; i < L; i++) pos[i] = (int32_t)i;
    language_embed_inputs(c, &g_model->text_w, ids, L, NULL, 0, x);
    const int64_t span[2] = {0, L};
    const sequence_spans spans = {span, 1};
    CHECK(language_decode(pool, c, &g_model->text_w, &spans, pos, ADAPTER_NONE, &ws, x, &err) == ABC_OK, "%s", err.message);
    free(pos);
    workspace_free(&ws);
    thread_pool_free(pool);
    return x;
}

static test_diff compare_to_double(const float *got, const double *want, size_t n) {
    float *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
    test_diff d = test_compare_f32(got, w, n);
    free(w);
    return d;
}

/* First the naive decoder is checked against the reference (short factors, 21 tokens ≤ 4096), then a
 * config variant with original_max_position_embeddings = 8 makes the same 21-token case take the long
 * factors and the 131072/8 attention factor: runtime and naive decoder must agree, and differ clearly
 * from the short-factor result (so the long path is really taken). */
static void test_long_factor_decoder(void) {
    test_npy ids_ref, hidden_ref;
    if (!load("txt_find_caption", "input_ids", &ids_ref) || !load("txt_find_caption", "last_hidden_state", &hidden_ref)) {
        CHECK(false, "fixture arrays missing");
        return;
    }
    const int64_t L = (int64_t)ids_ref.count;
    const int H = g_model->text.hidden;
    int32_t *ids = ids_of(&ids_ref);
    double *naive = malloc((size_t)L * H * sizeof *naive);

    naive_phi3_decoder(&g_model->text, &g_model->text_w, ids, L, naive);
    test_diff d = compare_to_double(hidden_ref.data, naive, (size_t)L * H);
    printf("  naive decoder vs reference (short factors): max|d| %.3g, max|ref| %.3g\n", d.max_abs, d.max_ref);
    CHECK(d.max_abs <= 1e-4 * d.max_ref, "the naive decoder does not reproduce the reference: %.3g", d.max_abs);

    text_config variant = g_model->text;
    variant.rope_original_max_positions = 8; /* 21 tokens > 8: long factors, factor sqrt(1 + ln 16384 / ln 8) */
    CHECK(rope_su_factors(&variant, L) == variant.rope_long_factor, "the variant takes the long factors");
    CHECK(fabs(rope_su_attention_factor(&variant) - sqrt(1.0 + log(16384.0) / log(8.0))) < 1e-6, "attention factor");
    float *got = runtime_decoder(&variant, ids, L);
    naive_phi3_decoder(&variant, &g_model->text_w, ids, L, naive);
    d = compare_to_double(got, naive, (size_t)L * H);
    printf("  long factors (original_max 8, 21 tokens): runtime vs naive max|d| %.3g, max|ref| %.3g\n", d.max_abs,
           d.max_ref);
    CHECK(d.max_abs <= 1e-4 * d.max_ref, "long-factor decoder max|d| %.3g > 1e-4 * %.3g", d.max_abs, d.max_ref);
    test_diff apart = test_compare_f32(got, hidden_ref.data, (size_t)L * H);
    CHECK(apart.max_abs > 0.05 * apart.max_ref, "the long-factor result is too close to the short one (%.3g)",
          apart.max_abs);
    /* the plain model on the same ids: the short path, equal to the reference */
    float *short_run = runtime_decoder(&g_model->text, ids, L);
    d = test_compare_f32(short_run, hidden_ref.data, (size_t)L * H);
    CHECK(d.max_abs <= 5e-4 * d.max_ref, "short-factor decoder max|d| %.3g", d.max_abs);
    free(short_run);
    free(got);
    free(naive);
    free(ids);
    test_npy_free(&ids_ref);
    test_npy_free(&hidden_ref);
}

/* ---- the public API for phi3_v ---- */

typedef struct {
    int calls;
    bool saw_inputs_embeds, saw_last_hidden, saw_position_ids;
    bool in_family_list; /* every emitted stage is one abc_model_stages(g_model) lists */
} stage_log;

static int log_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                     const void *data) {
    stage_log *log = user;
    (void)dtype, (void)data;
    log->calls++;
    bool listed = false;
    for (const char *const *s = abc_model_stages(g_model); *s; s++) listed |= !strcmp(*s, name);
    log->in_family_list = (log->calls == 1 || log->in_family_list) && listed;
    if (!strcmp(name, ABC_STAGE_INPUTS_EMBEDS)) log->saw_inputs_embeds = ndim == 2;
    if (!strcmp(name, ABC_STAGE_LAST_HIDDEN)) log->saw_last_hidden = ndim == 2;
    if (!strcmp(name, ABC_STAGE_POSITION_IDS)) log->saw_position_ids = ndim == 1 && shape[0] > 0;
    return 0;
}

static void test_embed_tokens_text(void) {
    static const char *const cases[] = {"txt_cat_dog", "txt_find_caption"};
    stage_log log = {0};
    abc_context_params p = abc_context_default_params();
    p.n_threads = 2;
    p.on_stage = log_stage;
    p.on_stage_user = &log;
    abc_context *ctx = NULL;
    abc_error err = {0};
    CHECK(abc_context_new(g_model, &p, &ctx, &err) == ABC_OK, "%s", err.message);
    for (int k = 0; k < 2 && ctx; k++) {
        test_npy ids_ref, emb;
        if (!load(cases[k], "input_ids", &ids_ref) || !load(cases[k], "embedding", &emb)) {
            CHECK(false, "fixture arrays missing");
            continue;
        }
        int32_t *ids = ids_of(&ids_ref);
        float out[64];
        abc_status st = abc_embed_tokens(ctx, ids, ids_ref.count, NULL, 0, NULL, ABC_ROLE_AUTO, out, 64);
        CHECK(st == ABC_OK, "%s: %s", cases[k], abc_context_errmsg(ctx));
        test_diff d = test_compare_f32(out, emb.data, 64);
        printf("  %s via abc_embed_tokens: 1-cos %.2g max|d| %.3g\n", cases[k], 1 - d.cosine, d.max_abs);
        CHECK(d.cosine >= 0.99999 && d.max_abs <= 1e-4, "%s: cos %.9f max|d| %.3g", cases[k], d.cosine, d.max_abs);
        free(ids);
        test_npy_free(&ids_ref);
        test_npy_free(&emb);
    }
    CHECK(log.saw_inputs_embeds && log.saw_last_hidden && log.saw_position_ids && log.in_family_list,
          "phi3_v stages emitted (and listed by abc_model_stages)");
    abc_context_free(ctx);
}

static void test_embed_tokens_errors(void) {
    abc_context *ctx = NULL;
    abc_error err = {0};
    CHECK(abc_context_new(g_model, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    if (!ctx) return;
    float out[64];
    float pixel = 0;
    const int32_t image_ids[] = {1, -1, -1, 1, 319};
    const int32_t bad_ids[] = {1, -2, 319};
    const int grid22[3] = {1, 2, 2}, grid_t2[3] = {2, 1, 1};
    CHECK(abc_embed_tokens(ctx, image_ids, 5, NULL, 0, NULL, ABC_ROLE_AUTO, out, 64) == ABC_ERR_PROMPT,
          "image tokens without an image: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, bad_ids, 3, NULL, 0, NULL, ABC_ROLE_AUTO, out, 64) == ABC_ERR_INVALID_ARG,
          "id -2: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, image_ids, 5, &pixel, 4, grid22, ABC_ROLE_AUTO, out, 64) == ABC_ERR_INVALID_ARG,
          "4 slots for a 2x2 grid: %s", abc_context_errmsg(ctx));
    CHECK(strstr(abc_context_errmsg(ctx), "5 image slots") != NULL, "message: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, image_ids, 5, &pixel, 3, grid_t2, ABC_ROLE_AUTO, out, 64) == ABC_ERR_INVALID_ARG,
          "t = 2: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, image_ids, 5, &pixel, 5, grid22, ABC_ROLE_AUTO, out, 64) == ABC_ERR_PROMPT,
          "2 image tokens for a 757-token image: %s", abc_context_errmsg(ctx));
    abc_context_free(ctx);
}

/* The processor's prompt rule: <s> + tokens per chunk, image runs of -1 between chunks. */
static void test_prompt_assembly(void) {
    abc_context *ctx = NULL;
    abc_error err = {0};
    CHECK(abc_context_new(g_model, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    if (!ctx) return;
    static const struct {
        const char *name, *prompt;
        int64_t per_image;
    } cases[] = {
        {"img_page_tgt", "<|image_1|> Represent the given image.", 457},
        {"img_rocket_qry", "<|image_1|> Represent the given image with the following question: What is in the image", 757},
        {"txt_cat_dog", "A cat and a dog", 0},
        {"txt_find_caption", "Find me an everyday image that matches the given caption: A cat and a tiger.", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        test_npy ref;
        if (!load(cases[k].name, "input_ids", &ref)) {
            CHECK(false, "fixture arrays missing");
            continue;
        }
        int32_t *want = ids_of(&ref);
        int_vec ids = {0};
        abc_status st = phi3_prompt_ids(ctx, cases[k].prompt, cases[k].per_image, &ids);
        CHECK(st == ABC_OK, "%s: %s", cases[k].name, abc_context_errmsg(ctx));
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < ids.len && i < ref.count; i++)
            if (ids.data[i] != want[i] && bad++ == 0) first = i;
        CHECK(ids.len == ref.count && bad == 0, "%s: %zu ids (want %zu), %zu differ, first at %zu: %d vs %d",
              cases[k].name, ids.len, ref.count, bad, first, first < ids.len ? ids.data[first] : 0, want[first]);
        int_vec_free(&ids);
        free(want);
        test_npy_free(&ref);
    }
    /* an empty chunk still gets its <s>: a prompt that is only the placeholder */
    int_vec ids = {0};
    CHECK(phi3_prompt_ids(ctx, "<|image_1|>", 3, &ids) == ABC_OK, "%s", abc_context_errmsg(ctx));
    const int32_t want[] = {1, -1, -1, -1, 1};
    CHECK(ids.len == 5 && memcmp(ids.data, want, sizeof want) == 0, "placeholder only: %zu ids", ids.len);
    int_vec_free(&ids);
    size_t n = 0;
    CHECK(count_phi3_placeholders(ctx, "a <|image_1|> b <|image_1|>", &n) == ABC_OK && n == 2, "two placeholders");
    CHECK(count_phi3_placeholders(ctx, "<|image_2|> b", &n) == ABC_ERR_PROMPT, "image 2 of one");
    CHECK(count_phi3_placeholders(ctx, "<|image_x|> <|image_|> text", &n) == ABC_OK && n == 0, "not placeholders");
    abc_context_free(ctx);
}

static void test_num_crops_param(void) {
    const char *path = getenv("ABC_PHI3V_MODEL") ? getenv("ABC_PHI3V_MODEL") : "build/tiny-phi3v.abc";
    abc_model_params p = abc_model_default_params();
    CHECK(p.num_crops == 0, "default num_crops 0 (the file's)");
    CHECK(phi3v_of(g_model)->hd.num_crops == 4 && phi3v_of(g_model)->hd.crop_size == 336, "file's num_crops %d", phi3v_of(g_model)->hd.num_crops);
    p.num_crops = 16;
    abc_model *m = NULL;
    abc_error err = {0};
    CHECK(abc_model_load(path, &p, &m, &err) == ABC_OK, "%s", err.message);
    if (m) {
        CHECK(phi3v_of(m)->hd.num_crops == 16, "override: %d", phi3v_of(m)->hd.num_crops);
        CHECK(strstr(abc_model_description(m), "phi3_v") && strstr(abc_model_description(m), "16 crops"),
              "description: %s", abc_model_description(m));
    }
    abc_model_free(m);
    p.num_crops = -1;
    CHECK(abc_model_load(path, &p, &m, &err) == ABC_ERR_INVALID_ARG && m == NULL, "negative num_crops");
    p = abc_model_default_params();
    p.max_pixels = 200704; /* qwen2_vl's pixel budget: phi3_v's is num_crops */
    CHECK(abc_model_load(path, &p, &m, &err) == ABC_ERR_INVALID_ARG && m == NULL && strstr(err.message, "num_crops"),
          "max_pixels on phi3_v: %s", err.message);
}

/* ---- malformed phi3_v files ---- */

static void expect_load_failure(const file_bytes *fb, const char *what, abc_status status, const char *needle) {
    expect_load_status(fb, "build/test_phi3v_corrupt.abc", what, status, needle);
}

static void test_malformed_models(void) {
    const char *path = getenv("ABC_PHI3V_MODEL") ? getenv("ABC_PHI3V_MODEL") : "build/tiny-phi3v.abc";
    file_bytes fb = file_bytes_read(path);
    CHECK(fb.size > 0, "read %s", path);
    if (!fb.size) return;
    /* integer (i64) or float (f64) metadata values, patched one at a time */
    struct {
        const char *key;
        int index;
        bool f64;
        double value;
        abc_status status;
        const char *needle;
    } metas[] = {
        {"hd.num_img_tokens", 0, false, 100, ABC_ERR_FORMAT, "hd.num_img_tokens"},
        {"hd.num_crops", 0, false, 0, ABC_ERR_FORMAT, "hd.num_crops"},
        {"clip.num_heads", 0, false, 3, ABC_ERR_FORMAT, "clip.num_heads"},
        {"clip.patch_size", 0, false, 15, ABC_ERR_FORMAT, "clip.image_size"},
        {"clip.num_layers", 0, false, 3, ABC_ERR_FORMAT, "clip.layers.2"},
        {"clip.hidden_size", 0, false, 16, ABC_ERR_FORMAT, "clip.embeddings"},
        {"text.original_max_position_embeddings", 0, false, 0, ABC_ERR_FORMAT, "original_max_position_embeddings"},
        {"text.rope_long_factor", 3, true, -1.0, ABC_ERR_FORMAT, "rope_long_factor"},
        {"text.rope_short_factor", 0, true, NAN, ABC_ERR_FORMAT, "rope_short_factor"},
        {"tokens.bos", 0, false, 40000, ABC_ERR_FORMAT, "tokens.bos"},
        {"text.intermediate_size", 0, false, 96, ABC_ERR_FORMAT, "mlp.gate_proj.weight"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        size_t at = find_meta(&fb, metas[i].key);
        CHECK(at != 0, "no metadata %s", metas[i].key);
        if (!at) continue;
        uint8_t old[8];
        memcpy(old, fb.data + at + 8 * metas[i].index, 8);
        if (metas[i].f64) memcpy(fb.data + at + 8 * metas[i].index, &metas[i].value, 8);
        else {
            int64_t v = (int64_t)metas[i].value;
            memcpy(fb.data + at + 8 * metas[i].index, &v, 8);
        }
        expect_load_failure(&fb, metas[i].key, metas[i].status, metas[i].needle);
        memcpy(fb.data + at + 8 * metas[i].index, old, 8);
    }
    size_t at = find_meta(&fb, "text.rope_scaling");
    CHECK(at != 0, "text.rope_scaling");
    if (at) {
        fb.data[at + 1] = 'X';
        expect_load_failure(&fb, "rope_scaling", ABC_ERR_FORMAT, "text.rope_scaling");
        fb.data[at + 1] = 'u';
    }
    at = find_meta(&fb, "general.architecture");
    if (at) {
        fb.data[at + 5] = 'x';
        expect_load_failure(&fb, "architecture", ABC_ERR_UNSUPPORTED, "phi3_x");
        fb.data[at + 5] = 'v';
    }
    /* swapped dims of a matrix: only the binder can notice */
    const char *matrices[] = {"hd.img_projection.0.weight", "clip.layers.1.mlp.fc1.weight",
                              "model.layers.0.self_attn.k_proj.weight", "clip.embeddings.patch_embedding.weight"};
    for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++) {
        size_t e = find_tensor(&fb, matrices[i]);
        CHECK(e != 0, "no tensor %s", matrices[i]);
        if (!e) continue;
        if (matrix_is_square(&fb, e)) continue;
        swap_matrix_dims(&fb, e);
        expect_load_failure(&fb, matrices[i], ABC_ERR_FORMAT, matrices[i]);
        swap_matrix_dims(&fb, e);
    }
    /* a missing separator (renamed) */
    size_t e = find_tensor(&fb, "hd.sub_GN");
    if (e) {
        fb.data[e + 64 + 3] = 'X';
        expect_load_failure(&fb, "hd.sub_GN", ABC_ERR_FORMAT, "hd.sub_GN");
        fb.data[e + 64 + 3] = 's';
    }
    free(fb.data);
}

/* Allocation failures anywhere in load, context and an image embedding (CLIP, layout, decoder) end in
 * ABC_ERR_NOMEM without leaks (ASan checks). The image is the rocket's global view twice: a 1×1 grid. */
static void test_allocation_failures(void) {
    const char *path = getenv("ABC_PHI3V_MODEL") ? getenv("ABC_PHI3V_MODEL") : "build/tiny-phi3v.abc";
    test_npy pv;
    if (!load("img_rocket_qry", "pixel_values_slot0", &pv)) {
        CHECK(false, "fixture arrays missing");
        return;
    }
    float *pixels = malloc(2 * pv.count * sizeof *pixels);
    memcpy(pixels, pv.data, pv.count * sizeof *pixels);
    memcpy(pixels + pv.count, pv.data, pv.count * sizeof *pixels);
    const int grid[3] = {1, 1, 1};
    int32_t ids[316];
    ids[0] = 1;
    for (int i = 1; i <= 313; i++) ids[i] = -1;
    ids[314] = 1, ids[315] = 319;
    int failures = 0, oks = 0;
    for (long n = 0; n < 400 && oks < 2; n++) {
        abc_model *m = NULL;
        abc_context *ctx = NULL;
        abc_error err = {0};
        atomic_store(&abc_test_fail_after, n);
        abc_status st = abc_model_load(path, NULL, &m, &err);
        if (st == ABC_OK) st = abc_context_new(m, NULL, &ctx, &err);
        float out[64];
        if (st == ABC_OK) st = abc_embed_tokens(ctx, ids, 316, pixels, 2, grid, ABC_ROLE_AUTO, out, 64);
        atomic_store(&abc_test_fail_after, -1);
        CHECK(st == ABC_OK || st == ABC_ERR_NOMEM, "n=%ld: %s (%s)", n, abc_status_string(st),
              ctx ? abc_context_errmsg(ctx) : err.message);
        if (st == ABC_OK) oks++;
        else failures++;
        abc_context_free(ctx);
        abc_model_free(m);
    }
    CHECK(failures > 10 && oks > 0, "fault injection reached %d failures, %d successes", failures, oks);
    free(pixels);
    test_npy_free(&pv);
}

/* The image path gives the same bits on 1 and 5 threads (CLIP attention per slot, matmul splits). */
static void test_threads_identical(void) {
    test_npy pv;
    if (!load("img_rocket_qry", "pixel_values_slot0", &pv)) {
        CHECK(false, "fixture arrays missing");
        return;
    }
    float *pixels = malloc(2 * pv.count * sizeof *pixels);
    memcpy(pixels, pv.data, pv.count * sizeof *pixels);
    for (size_t i = 0; i < pv.count; i++) pixels[pv.count + i] = -((float *)pv.data)[i]; /* a second, different view */
    const int grid[3] = {1, 1, 1};
    int32_t ids[316];
    ids[0] = 1;
    for (int i = 1; i <= 313; i++) ids[i] = -1;
    ids[314] = 1, ids[315] = 319;
    float out[2][64];
    const int threads[2] = {1, 5};
    for (int t = 0; t < 2; t++) {
        abc_context_params p = abc_context_default_params();
        p.n_threads = threads[t];
        abc_context *ctx = NULL;
        abc_error err = {0};
        CHECK(abc_context_new(g_model, &p, &ctx, &err) == ABC_OK, "%s", err.message);
        if (ctx)
            CHECK(abc_embed_tokens(ctx, ids, 316, pixels, 2, grid, ABC_ROLE_AUTO, out[t], 64) == ABC_OK, "%s",
                  abc_context_errmsg(ctx));
        abc_context_free(ctx);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "1 and 5 threads differ");
    free(pixels);
    test_npy_free(&pv);
}

int main(void) {
    const char *path = getenv("ABC_PHI3V_MODEL") ? getenv("ABC_PHI3V_MODEL") : "build/tiny-phi3v.abc";
    abc_error err = {0};
    if (abc_model_load(path, NULL, &g_model, &err) != ABC_OK) {
        fprintf(stderr, "cannot load %s (make build/tiny-phi3v.abc): %s\n", path, err.message);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN_TEST(test_image_token_count);
    RUN_TEST(test_hd_layout);
    RUN_TEST(test_clip_global_view);
    RUN_TEST(test_page_from_clip_features);
    RUN_TEST(test_su_rope_tables);
    RUN_TEST(test_long_factor_decoder);
    RUN_TEST(test_embed_tokens_text);
    RUN_TEST(test_embed_tokens_errors);
    RUN_TEST(test_threads_identical);
    RUN_TEST(test_prompt_assembly);
    RUN_TEST(test_num_crops_param);
    RUN_TEST(test_malformed_models);
    RUN_TEST(test_allocation_failures);
    abc_model_free(g_model);
    return test_summary();
}
