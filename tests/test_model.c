/* Tests of the model (sections 8–11): every case of the tiny fixture set through abc_embed_tokens
 * and abc_embed against the transformers reference (docs/testing.md#tolerances), thread-count
 * determinism, the query adapter's role switch, argument and prompt errors, malformed model files
 * and allocation failures.
 *
 * Needs build/tiny-abc.abc and build/tiny-vlm2vec.abc (`make test` converts them first), the reference
 * arrays in tests/fixtures/qwen2vl-tiny/cases/ and the decoded images in tests/fixtures/images/. */
#include "../abc.c"

#include <time.h>

#include "npy.h"
#include "test.h"
#include "abc_file_patch.h"

#define MODEL_ABC "build/tiny-abc.abc"
#define MODEL_VLM2VEC "build/tiny-vlm2vec.abc"
#define CASES_DIR "tests/fixtures/qwen2vl-tiny/cases/"
#define IMAGE_DIR "tests/fixtures/images/"

typedef struct {
    const char *name;
    bool abc;           /* preset abc (else vlm2vec) */
    abc_role role;
    const char *image;  /* decoded reference image in IMAGE_DIR, or NULL */
    const char *text;   /* the text given to abc_embed */
    int grid[3];
} model_case;

static const model_case CASES[] = {
    {"abc_query_astronaut", true, ABC_ROLE_QUERY, "astronaut.png.png", "What is the person holding?", {1, 36, 36}},
    {"abc_query_rocket_bang", true, ABC_ROLE_QUERY, "rocket.jpg.png", "what color is the sky!", {1, 30, 46}},
    {"abc_cand_image_coffee", true, ABC_ROLE_CANDIDATE, "coffee.png.png", NULL, {1, 28, 42}},
    {"abc_cand_image_camera", true, ABC_ROLE_CANDIDATE, "camera.png.png", NULL, {1, 36, 36}},
    {"abc_cand_text", true, ABC_ROLE_CANDIDATE, NULL, "a cup of coffee on a wooden table", {0, 0, 0}},
    {"vlm2vec_query_astronaut", false, ABC_ROLE_QUERY, "astronaut.png.png",
     "<|image_pad|> Represent the given image with the following question: What is the person holding?", {1, 36, 36}},
    {"vlm2vec_query_coffee_prog", false, ABC_ROLE_QUERY, "coffee_420_prog.jpg.png",
     "<|image_pad|> Represent the given image.", {1, 28, 42}},
    {"vlm2vec_text", false, ABC_ROLE_CANDIDATE, NULL, "A person in a space suit", {0, 0, 0}},
};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])

static abc_model *g_abc, *g_vlm2vec;

/* ---- capturing stages ---- */

typedef struct {
    int64_t shape[3];
    int ndim;
    void *data;
    size_t bytes;
} captured;

typedef struct {
    captured input_ids, position_ids, vision_embeds, last_hidden, embedding, pixel_values;
    const char *stop_at; /* stop after this stage (NULL: never) */
    int calls;
} capture;

static int capture_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                         const void *data) {
    capture *c = user;
    c->calls++;
    captured *slot = NULL;
    if (!strcmp(name, "input_ids")) slot = &c->input_ids;
    else if (!strcmp(name, "position_ids")) slot = &c->position_ids;
    else if (!strcmp(name, "vision_embeds")) slot = &c->vision_embeds;
    else if (!strcmp(name, "last_hidden")) slot = &c->last_hidden;
    else if (!strcmp(name, "embedding")) slot = &c->embedding;
    else if (!strcmp(name, "pixel_values")) slot = &c->pixel_values;
    if (slot) {
        size_t count = 1;
        for (int i = 0; i < ndim; i++) count *= (size_t)shape[i];
        size_t esize = dtype == ABC_DTYPE_U8 ? 1 : 4;
        free(slot->data);
        slot->data = malloc(count * esize);
        memcpy(slot->data, data, count * esize);
        slot->bytes = count * esize;
        slot->ndim = ndim;
        for (int i = 0; i < ndim && i < 3; i++) slot->shape[i] = shape[i];
    }
    return c->stop_at && !strcmp(name, c->stop_at);
}

static void capture_free(capture *c) {
    captured *all[] = {&c->input_ids, &c->position_ids, &c->vision_embeds, &c->last_hidden, &c->embedding,
                       &c->pixel_values};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->data);
    memset(c, 0, sizeof *c);
}

static abc_context *new_context(const abc_model *m, int threads, capture *cap) {
    abc_context_params p = abc_context_default_params();
    p.n_threads = threads;
    if (cap) {
        p.on_stage = capture_stage;
        p.on_stage_user = cap;
    }
    abc_context *ctx = NULL;
    abc_error err;
    abc_status st = abc_context_new(m, &p, &ctx, &err);
    CHECK(st == ABC_OK, "context: %s", err.message);
    return ctx;
}

/* ---- comparisons ---- */

static bool same_shape(const captured *c, const test_npy *ref) {
    if (!c->data || c->ndim != ref->ndim) return false;
    for (int i = 0; i < ref->ndim; i++)
        if (c->shape[i] != ref->shape[i]) return false;
    return true;
}

static bool load_ref(const char *case_name, const char *stage, test_npy *out) {
    char path[512];
    snprintf(path, sizeof path, CASES_DIR "%s/%s.npy", case_name, stage);
    return test_npy_read(path, out) == 0;
}

/* Pixel values of a case: its decoded reference image through the preset's preprocessing. */
static float *case_pixels(const model_case *c, const abc_model *m, int64_t *n_patches, int grid[3]) {
    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "%s", c->image);
    abc_image img = {0};
    abc_error err = {0};
    abc_status st = abc_image_load(path, 0, &img, &err);
    CHECK(st == ABC_OK, "%s: %s", path, err.message);
    if (st != ABC_OK) return NULL;
    float *pv = NULL;
    st = preprocess_image(&img, &qwen2vl_of(m)->preprocess, NULL, &pv, n_patches, grid, &err);
    abc_image_free(&img);
    CHECK(st == ABC_OK, "%s: preprocess: %s", path, err.message);
    return pv;
}

/* Checks every captured stage of one case against the reference; prints the measured differences. */
static void check_case_stages(const model_case *c, const capture *cap, const char *how, bool ids_only) {
    test_npy ref = {0};
    if (load_ref(c->name, "input_ids", &ref)) {
        CHECK(same_shape(&cap->input_ids, &ref) && !memcmp(cap->input_ids.data, ref.data, ref.count * 4),
              "%s: input_ids differ", c->name);
        test_npy_free(&ref);
    } else CHECK(false, "missing reference");
    if (load_ref(c->name, "position_ids", &ref)) {
        CHECK(same_shape(&cap->position_ids, &ref) && !memcmp(cap->position_ids.data, ref.data, ref.count * 4),
              "%s: position_ids differ", c->name);
        test_npy_free(&ref);
    } else CHECK(false, "missing reference");
    if (ids_only) return;
    test_diff dv = {0, 1, 1}, dh = {0, 1, 1}, de = {0, 1, 1};
    if (c->image) {
        if (load_ref(c->name, "vision_embeds", &ref)) {
            CHECK(same_shape(&cap->vision_embeds, &ref), "%s: vision_embeds shape", c->name);
            if (same_shape(&cap->vision_embeds, &ref)) {
                dv = test_compare_f32(cap->vision_embeds.data, ref.data, ref.count);
                CHECK(dv.max_abs <= 1e-4 * dv.max_ref, "%s: vision_embeds max|d| %.3g > 1e-4 * %.3g", c->name,
                      dv.max_abs, dv.max_ref);
            }
            test_npy_free(&ref);
        } else CHECK(false, "missing reference");
    } else {
        CHECK(!cap->vision_embeds.data, "%s: a text-only case emitted vision_embeds", c->name);
    }
    if (load_ref(c->name, "last_hidden", &ref)) {
        CHECK(same_shape(&cap->last_hidden, &ref), "%s: last_hidden shape", c->name);
        if (same_shape(&cap->last_hidden, &ref)) {
            dh = test_compare_f32(cap->last_hidden.data, ref.data, ref.count);
            CHECK(dh.max_abs <= 5e-4 * dh.max_ref, "%s: last_hidden max|d| %.3g > 5e-4 * %.3g", c->name, dh.max_abs,
                  dh.max_ref);
        }
        test_npy_free(&ref);
    } else CHECK(false, "missing reference");
    if (load_ref(c->name, "embedding", &ref)) {
        CHECK(same_shape(&cap->embedding, &ref), "%s: embedding shape", c->name);
        if (same_shape(&cap->embedding, &ref)) {
            de = test_compare_f32(cap->embedding.data, ref.data, ref.count);
            CHECK(de.cosine >= 0.99999 && de.max_abs <= 1e-4, "%s: embedding cos %.9f max|d| %.3g", c->name, de.cosine,
                  de.max_abs);
        }
        test_npy_free(&ref);
    } else CHECK(false, "missing reference");
    printf("  %-26s %-6s vision rel %.2e | last_hidden rel %.2e (max|d| %.2e) | embedding 1-cos %.1e max|d| %.2e\n",
           c->name, how, c->image ? dv.max_abs / dv.max_ref : 0.0, dh.max_abs / dh.max_ref, dh.max_abs,
           1.0 - de.cosine, de.max_abs);
}

/* ---- the fixture cases ---- */

static void run_case_tokens(const model_case *c, int threads, float *out_embedding) {
    abc_model *m = c->abc ? g_abc : g_vlm2vec;
    test_npy ids = {0};
    if (!load_ref(c->name, "input_ids", &ids)) {
        CHECK(false, "%s: input_ids", c->name);
        return;
    }
    int64_t n_patches = 0;
    int grid[3] = {0, 0, 0};
    float *pv = NULL;
    if (c->image) {
        pv = case_pixels(c, m, &n_patches, grid);
        CHECK(grid[0] == c->grid[0] && grid[1] == c->grid[1] && grid[2] == c->grid[2], "%s: grid %d,%d,%d", c->name,
              grid[0], grid[1], grid[2]);
    }
    capture cap = {0};
    abc_context *ctx = new_context(m, threads, &cap);
    float emb[64];
    abc_status st = abc_embed_tokens(ctx, ids.data, ids.count, pv, (size_t)n_patches, c->image ? grid : NULL, c->role,
                                     emb, 64);
    CHECK(st == ABC_OK, "%s: %s", c->name, abc_context_errmsg(ctx));
    if (st == ABC_OK) {
        check_case_stages(c, &cap, threads == 1 ? "tok/1" : "tok/3", false);
        CHECK(!memcmp(emb, cap.embedding.data, 32 * sizeof(float)), "%s: output != embedding stage", c->name);
        if (out_embedding) memcpy(out_embedding, emb, 32 * sizeof(float));
    }
    abc_context_free(ctx);
    capture_free(&cap);
    free(pv);
    test_npy_free(&ids);
}

/* ABC's pooling rule on its own (issue #26: only one fixture case had an id-0 token): rows whose token id
 * is 0 are left out of the sum but the sum is divided by all L rows; VLM2Vec takes the last row. */
static void test_pooling_rules(void) {
    enum { L = 5, H = 3 };
    const float hidden[L * H] = {1, 2, 3, 100, 200, 300, 4, 5, 6, -7, 8, 9, 10, 20, 40};
    const int32_t ids[L] = {17, 0, 9, 0, 151655};
    double acc[H];
    float out[H];
    pool_mean_nonzero(hidden, ids, L, H, acc, out);
    const float want[H] = {(1 + 4 + 10) / 5.0f, (2 + 5 + 20) / 5.0f, (3 + 6 + 40) / 5.0f};
    CHECK(out[0] == want[0] && out[1] == want[1] && out[2] == want[2], "mean over ids != 0: %g %g %g, want %g %g %g",
          out[0], out[1], out[2], want[0], want[1], want[2]);
    pool_last(hidden, L, H, out);
    CHECK(out[0] == 10 && out[1] == 20 && out[2] == 40, "last row: %g %g %g", out[0], out[1], out[2]);
}

static void test_fixture_cases_tokens(void) {
    for (int i = 0; i < N_CASES; i++) run_case_tokens(&CASES[i], 3, NULL);
}

/* The whole pipeline from image file + text: prompt template, tokenizer, decoder, preprocessing. The
 * ids and positions of every case must be exact; two cases run to the end (the rest of the network
 * is the same code as above). */
static void test_fixture_cases_embed(void) {
    for (int i = 0; i < N_CASES; i++) {
        const model_case *c = &CASES[i];
        const bool full = i == 0 || i == 5;
        char path[512];
        snprintf(path, sizeof path, IMAGE_DIR "%s", c->image ? c->image : "");
        capture cap = {0};
        cap.stop_at = full ? NULL : "position_ids";
        abc_context *ctx = new_context(c->abc ? g_abc : g_vlm2vec, 2, &cap);
        abc_input in = abc_input_default();
        in.image_path = c->image ? path : NULL;
        in.text = c->text;
        float emb[32];
        abc_status st = abc_embed(ctx, &in, emb, 32);
        CHECK(st == (full ? ABC_OK : ABC_ERR_STOPPED), "%s: %s", c->name, abc_context_errmsg(ctx));
        if (st == ABC_OK || st == ABC_ERR_STOPPED) check_case_stages(c, &cap, "embed", !full);
        abc_context_free(ctx);
        capture_free(&cap);
    }
}

/* Worker count must not change a single bit. */
static void test_threads_identical(void) {
    const int picks[] = {0, 4, 5};
    for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
        float e1[32], e3[32];
        memset(e1, 0, sizeof e1);
        memset(e3, 1, sizeof e3);
        run_case_tokens(&CASES[picks[k]], 1, e1);
        run_case_tokens(&CASES[picks[k]], 3, e3);
        CHECK(!memcmp(e1, e3, sizeof e1), "%s: 1 and 3 threads differ", CASES[picks[k]].name);
    }
}

/* The ABC instruct adapter is on for queries only; AUTO picks query for image + text. */
static void test_query_adapter_role(void) {
    const model_case *c = &CASES[0]; /* abc_query_astronaut */
    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "%s", c->image);
    float e_auto[32], e_query[32], e_cand[32];
    abc_context *ctx = new_context(g_abc, 2, NULL);
    abc_input in = abc_input_default();
    in.image_path = path;
    in.text = c->text;
    CHECK(abc_embed(ctx, &in, e_auto, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    in.role = ABC_ROLE_QUERY;
    CHECK(abc_embed(ctx, &in, e_query, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    in.role = ABC_ROLE_CANDIDATE;
    CHECK(abc_embed(ctx, &in, e_cand, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(!memcmp(e_auto, e_query, sizeof e_auto), "AUTO with image + text must be a query");
    test_diff d = test_compare_f32(e_cand, e_query, 32);
    CHECK(d.max_abs > 1e-3, "the adapter changed nothing (max|d| %.3g)", d.max_abs);

    /* abc_embed_tokens AUTO: the image-only prompt is a candidate, the instruction prompt a query */
    for (int k = 0; k < 4; k += 2) {
        const model_case *ck = &CASES[k];
        test_npy ids = {0};
        if (!load_ref(ck->name, "input_ids", &ids)) continue;
        int64_t n = 0;
        int grid[3];
        float *pv = case_pixels(ck, g_abc, &n, grid);
        float ea[32], er[32];
        CHECK(abc_embed_tokens(ctx, ids.data, ids.count, pv, (size_t)n, grid, ABC_ROLE_AUTO, ea, 32) == ABC_OK, "%s",
              abc_context_errmsg(ctx));
        CHECK(abc_embed_tokens(ctx, ids.data, ids.count, pv, (size_t)n, grid, ck->role, er, 32) == ABC_OK, "%s",
              abc_context_errmsg(ctx));
        CHECK(!memcmp(ea, er, sizeof ea), "%s: AUTO chose the wrong role", ck->name);
        free(pv);
        test_npy_free(&ids);
    }
    abc_context_free(ctx);

    /* the vlm2vec file has no adapter: role changes nothing */
    ctx = new_context(g_vlm2vec, 2, NULL);
    in = abc_input_default();
    in.text = "A person in a space suit";
    in.role = ABC_ROLE_QUERY;
    CHECK(abc_embed(ctx, &in, e_query, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    in.role = ABC_ROLE_CANDIDATE;
    CHECK(abc_embed(ctx, &in, e_cand, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(!memcmp(e_query, e_cand, sizeof e_query), "vlm2vec: role changed the embedding");
    abc_context_free(ctx);
}

/* Same image as encoded file, as bytes in memory and as a strided RGB buffer. */
static void test_image_sources(void) {
    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "palette_color.png.png"); /* 10×10 → 56×56: 4 image tokens */
    abc_context *ctx = new_context(g_vlm2vec, 2, NULL);
    const char *text = "<|image_pad|> a small image";
    float a[32], b[32], c[32];
    abc_input in = abc_input_default();
    in.image_path = path;
    in.text = text;
    CHECK(abc_embed(ctx, &in, a, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));

    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *bytes = malloc((size_t)size);
        CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size, "read");
        fclose(f);
        in = abc_input_default();
        in.text = text;
        in.image_data = bytes;
        in.image_size = (size_t)size;
        CHECK(abc_embed(ctx, &in, b, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
        CHECK(!memcmp(a, b, sizeof a), "memory image differs from file image");
        free(bytes);
    }

    abc_image img = {0};
    abc_error err;
    CHECK(abc_image_load(path, 0, &img, &err) == ABC_OK, "%s", err.message);
    if (img.rgb) {
        size_t stride = (size_t)img.width * 3 + 5;
        uint8_t *padded = calloc((size_t)img.height, stride);
        for (int y = 0; y < img.height; y++)
            memcpy(padded + y * stride, img.rgb + (size_t)y * img.width * 3, (size_t)img.width * 3);
        in = abc_input_default();
        in.text = text;
        in.rgb = padded;
        in.rgb_width = img.width;
        in.rgb_height = img.height;
        in.rgb_stride = stride;
        CHECK(abc_embed(ctx, &in, c, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
        CHECK(!memcmp(a, c, sizeof a), "RGB-buffer image differs from file image");
        in.rgb_stride = (size_t)img.width * 3 - 1;
        CHECK(abc_embed(ctx, &in, c, 32) == ABC_ERR_INVALID_ARG, "short stride accepted");
        free(padded);
        abc_image_free(&img);
    }
    abc_context_free(ctx);
}

/* ---- errors ---- */

static void test_argument_errors(void) {
    abc_context *ctx = new_context(g_abc, 1, NULL);
    float out[32];
    abc_input in = abc_input_default();
    in.text = "hello";
    CHECK(abc_embed(NULL, &in, out, 32) == ABC_ERR_INVALID_ARG, "NULL context");
    CHECK(abc_embed(ctx, NULL, out, 32) == ABC_ERR_INVALID_ARG, "NULL input");
    CHECK(abc_embed(ctx, &in, NULL, 32) == ABC_ERR_INVALID_ARG, "NULL out");
    CHECK(abc_embed(ctx, &in, out, 31) == ABC_ERR_INVALID_ARG, "short out");
    CHECK(strstr(abc_context_errmsg(ctx), "31") != NULL, "message: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(abc_context_errmsg(ctx)[0] == 0, "message not cleared after success");
    abc_input empty = abc_input_default();
    CHECK(abc_embed(ctx, &empty, out, 32) == ABC_ERR_INVALID_ARG, "nothing to embed");
    in.role = (abc_role)7;
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_INVALID_ARG, "bad role");
    in = abc_input_default();
    in.image_path = "a.png";
    in.image_data = (const uint8_t *)"x";
    in.image_size = 1;
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_INVALID_ARG, "two image sources");
    in = abc_input_default();
    in.image_path = "tests/fixtures/no/such/file.png";
    abc_status st = abc_embed(ctx, &in, out, 32);
    CHECK(st == ABC_ERR_IO, "missing file: %s (%s)", abc_status_string(st), abc_context_errmsg(ctx));
    in = abc_input_default();
    in.image_data = (const uint8_t *)"not an image at all";
    in.image_size = 19;
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_IMAGE, "garbage image");
    in = abc_input_default();
    in.text = "bad \xff utf-8";
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_UTF8, "invalid UTF-8: %s", abc_context_errmsg(ctx));

    /* prompt / image disagreements */
    in = abc_input_default();
    in.text = "<|image_pad|> describe";
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_PROMPT, "placeholder without image");
    in = abc_input_default();
    in.prompt = "just text";
    in.rgb = (const uint8_t *)"\1\2\3";
    in.rgb_width = in.rgb_height = 1;
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_PROMPT, "image without placeholder");

    /* abc_embed_tokens */
    int32_t ids[4] = {1, 2, 3, 4};
    float pv[4 * 1176] = {0};
    int grid[3] = {1, 2, 2};
    CHECK(abc_embed_tokens(ctx, ids, 4, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, ids, 0, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "no ids");
    CHECK(abc_embed_tokens(ctx, NULL, 4, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "NULL ids");
    ids[2] = 151936;
    CHECK(abc_embed_tokens(ctx, ids, 4, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "id >= vocab");
    ids[2] = -1;
    CHECK(abc_embed_tokens(ctx, ids, 4, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "negative id");
    ids[2] = 151655; /* one image token, as a 2×2 grid needs */
    CHECK(abc_embed_tokens(ctx, ids, 4, pv, 4, grid, ABC_ROLE_AUTO, out, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(abc_embed_tokens(ctx, ids, 4, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_PROMPT, "image token, no image");
    CHECK(abc_embed_tokens(ctx, ids, 4, pv, 4, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "no grid");
    int bad_grid[3] = {1, 2, 3};
    CHECK(abc_embed_tokens(ctx, ids, 4, pv, 4, bad_grid, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG, "odd grid");
    int wrong_grid[3] = {1, 2, 4};
    CHECK(abc_embed_tokens(ctx, ids, 4, pv, 4, wrong_grid, ABC_ROLE_AUTO, out, 32) == ABC_ERR_INVALID_ARG,
          "grid != n_patches");
    ids[2] = 5;
    CHECK(abc_embed_tokens(ctx, ids, 4, pv, 4, grid, ABC_ROLE_AUTO, out, 32) == ABC_ERR_PROMPT, "image, no token");
    abc_context_free(ctx);

    /* max_tokens */
    abc_model_params mp = abc_model_default_params();
    mp.max_tokens = 10;
    abc_model *small = NULL;
    abc_error err;
    CHECK(abc_model_load(MODEL_ABC, &mp, &small, &err) == ABC_OK, "%s", err.message);
    if (small) {
        ctx = new_context(small, 1, NULL);
        in = abc_input_default();
        in.text = "short";
        CHECK(abc_embed(ctx, &in, out, 32) == ABC_ERR_TOO_LARGE, "template over 10 tokens: %s", abc_context_errmsg(ctx));
        int32_t many[11] = {0};
        CHECK(abc_embed_tokens(ctx, many, 11, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_ERR_TOO_LARGE, "11 ids");
        CHECK(abc_embed_tokens(ctx, many, 10, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32) == ABC_OK, "10 ids");
        abc_context_free(ctx);
        abc_model_free(small);
    }
    mp.max_tokens = -1;
    CHECK(abc_model_load(MODEL_ABC, &mp, &small, &err) == ABC_ERR_INVALID_ARG && small == NULL, "negative max_tokens");
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = -2;
    CHECK(abc_context_new(g_abc, &cp, &ctx, &err) == ABC_ERR_INVALID_ARG && ctx == NULL, "negative threads");
    CHECK(abc_context_new(NULL, NULL, &ctx, &err) == ABC_ERR_INVALID_ARG, "NULL model");
    CHECK(abc_model_load(NULL, NULL, &small, &err) == ABC_ERR_INVALID_ARG, "NULL path");
    CHECK(abc_model_load("build/no-such-model.abc", NULL, &small, &err) == ABC_ERR_IO, "missing model: %s", err.message);
    abc_model_free(NULL);
    abc_context_free(NULL);
    CHECK(strcmp(abc_status_string(ABC_ERR_PROMPT), abc_status_string(ABC_ERR_IO)) != 0, "status strings");
    CHECK(abc_status_string((abc_status)99) != NULL, "unknown status string");
}

/* The callback sees the stages in order and can stop the pipeline. */
static void test_stage_callback(void) {
    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "palette_color.png.png");
    const char *stops[] = {"decoded", "resized", "pixel_values", "input_ids", "position_ids", "vision_embeds",
                           "last_hidden", "embedding"};
    for (int k = 0; k < 8; k++) {
        capture cap = {0};
        cap.stop_at = stops[k];
        abc_context *ctx = new_context(g_vlm2vec, 2, &cap);
        abc_input in = abc_input_default();
        in.image_path = path;
        in.text = "<|image_pad|> what is this?";
        float out[32];
        abc_status st = abc_embed(ctx, &in, out, 32);
        CHECK(st == ABC_ERR_STOPPED, "stop at %s: %s", stops[k], abc_status_string(st));
        CHECK(cap.calls == k + 1, "stop at %s after %d calls", stops[k], cap.calls);
        if (k == 7) {
            CHECK(cap.vision_embeds.ndim == 2 && cap.vision_embeds.shape[0] == 4 && cap.vision_embeds.shape[1] == 32,
                  "vision_embeds shape");
            CHECK(cap.position_ids.ndim == 2 && cap.position_ids.shape[0] == 3 &&
                      cap.position_ids.shape[1] == cap.input_ids.shape[0],
                  "position_ids shape");
            CHECK(cap.last_hidden.ndim == 2 && cap.last_hidden.shape[1] == 32 && cap.embedding.shape[0] == 32,
                  "last_hidden / embedding shapes");
        }
        if (k == 2) {
            CHECK(cap.pixel_values.ndim == 2 && cap.pixel_values.shape[0] == 16 && cap.pixel_values.shape[1] == 1176,
                  "pixel_values shape [%lld, %lld]", (long long)cap.pixel_values.shape[0],
                  (long long)cap.pixel_values.shape[1]);
        }
        abc_context_free(ctx);
        capture_free(&cap);
    }
    /* the family's stage list is exactly what ran, in order; the list of all stages holds them too */
    const char *const *listed = abc_model_stages(g_vlm2vec);
    int n_listed = 0;
    for (; listed[n_listed]; n_listed++) {
        CHECK(n_listed < 8 && !strcmp(listed[n_listed], stops[n_listed]), "stage %d: %s", n_listed, listed[n_listed]);
        bool found = false;
        for (const char *const *all = abc_model_stages(NULL); *all; all++) found |= !strcmp(*all, listed[n_listed]);
        CHECK(found, "%s missing from abc_model_stages(NULL)", listed[n_listed]);
    }
    CHECK(n_listed == 8, "%d stages listed", n_listed);
}

/* M-RoPE ids under the three rules, on a made-up 4×6 patch grid (2×3 merged, 6 image tokens). */
static void test_position_rules(void) {
    text_config c = {0};
    c.image_token = 10;
    c.vision_start_token = 9;
    c.merge_size = 2;
    const int grid[3] = {1, 4, 6};
    int32_t pos[3 * 16];
    abc_error err;
    /* announced: text 0, 1; image at s = 2: t 2, h 2..3, w 2..4; text after: 5, 6 */
    const int32_t a[] = {1, 9, 10, 10, 10, 10, 10, 10, 2, 3};
    const int32_t want_a[3][10] = {{0, 1, 2, 2, 2, 2, 2, 2, 5, 6}, {0, 1, 2, 2, 2, 3, 3, 3, 5, 6},
                                   {0, 1, 2, 3, 4, 2, 3, 4, 5, 6}};
    CHECK(mrope_position_ids(&c, a, 10, grid, pos, &err) == ABC_OK, "%s", err.message);
    for (int k = 0; k < 3; k++) CHECK(!memcmp(pos + 10 * k, want_a[k], sizeof want_a[k]), "announced, row %d", k);
    /* not announced (VLM2Vec's "<|image_pad|> ..."): 1-D ids; token_type rule: 3-D */
    const int32_t b[] = {10, 10, 10, 10, 10, 10, 2};
    CHECK(mrope_position_ids(&c, b, 7, grid, pos, &err) == ABC_OK, "%s", err.message);
    for (int i = 0; i < 21; i++) CHECK(pos[i] == i % 7, "1-D id %d = %d", i, pos[i]);
    c.mrope_rule = MROPE_TOKEN_TYPE;
    CHECK(mrope_position_ids(&c, b, 7, grid, pos, &err) == ABC_OK, "%s", err.message);
    const int32_t want_b[3][7] = {{0, 0, 0, 0, 0, 0, 3}, {0, 0, 0, 1, 1, 1, 3}, {0, 1, 2, 0, 1, 2, 3}};
    for (int k = 0; k < 3; k++) CHECK(!memcmp(pos + 7 * k, want_b[k], sizeof want_b[k]), "token_type, row %d", k);
    /* sequential (GME): even the announced run is numbered like text */
    c.mrope_rule = MROPE_SEQUENTIAL;
    CHECK(mrope_position_ids(&c, a, 10, grid, pos, &err) == ABC_OK, "%s", err.message);
    for (int i = 0; i < 30; i++) CHECK(pos[i] == i % 10, "sequential id %d = %d", i, pos[i]);
    c.mrope_rule = MROPE_VISION_START;
    /* two runs, one announced: the first run in order gets 3-D ids, the second counts on in 1-D */
    const int32_t d[] = {9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3};
    CHECK(mrope_position_ids(&c, d, 14, grid, pos, &err) == ABC_OK, "%s", err.message);
    CHECK(pos[0] == 0 && pos[1] == 1 && pos[14 + 6] == 2 && pos[28 + 6] == 3 && pos[7] == 4 && pos[13] == 10 &&
              pos[14 + 13] == 10,
          "two runs: %d %d %d %d %d %d", pos[0], pos[1], pos[20], pos[34], pos[7], pos[13]);
    /* wrong counts */
    CHECK(mrope_position_ids(&c, a, 7, grid, pos, &err) == ABC_ERR_PROMPT, "5 image tokens");
    CHECK(mrope_position_ids(&c, a, 10, NULL, pos, &err) == ABC_ERR_PROMPT, "image tokens without image");
    const int32_t e[] = {9, 10, 10, 10, 2, 10, 10, 10};
    CHECK(mrope_position_ids(&c, e, 8, grid, pos, &err) == ABC_ERR_PROMPT, "split run");
}

/* ---- malformed model files ---- */

/* Writes the patched bytes, loads them and expects `status` with `needle` in the message. */
static void expect_load_failure(const file_bytes *fb, const char *what, abc_status status, const char *needle) {
    expect_load_status(fb, "build/test_model_corrupt.abc", what, status, needle);
}

static void patch_i64(file_bytes *fb, const char *key, int index, int64_t value, int64_t *old) {
    size_t at = find_meta(fb, key);
    CHECK(at != 0, "no metadata %s", key);
    if (!at) return;
    memcpy(old, fb->data + at + 8 * index, 8);
    memcpy(fb->data + at + 8 * index, &value, 8);
}

static void test_malformed_models(void) {
    file_bytes fb = file_bytes_read(MODEL_ABC);
    CHECK(fb.size > 0, "read %s", MODEL_ABC);
    if (!fb.size) return;
    int64_t old = 0;
    struct {
        const char *key;
        int index;
        int64_t value;
        const char *needle;
    } metas[] = {
        {"text.num_heads", 0, 3, "text.num_heads"},
        {"text.head_dim", 0, 8, "text.head_dim"},
        {"text.num_kv_heads", 0, 0, "text.num_kv_heads"},
        {"text.mrope_section", 2, 4, "mrope_section"},
        {"text.num_layers", 0, -1, "text.num_layers"},
        {"vision.out_dim", 0, 16, "vision.out_dim"},
        {"vision.num_heads", 0, 5, "vision.embed_dim"},
        {"vision.in_channels", 0, 4, "vision.in_channels"},
        {"tokens.image_pad", 0, 151936, "tokens.image_pad"},
        {"model.embedding_dim", 0, 64, "model.embedding_dim"},
        {"image.factor", 0, 14, "image.factor"},
        {"query_adapter.rank", 0, 0, "query_adapter.rank"},
        {"text.intermediate_size", 0, 65, "mlp.gate_proj.weight"},
        {"vision.mlp_dim", 0, 64, "visual.blocks.0.mlp.fc1.weight"},
        {"text.vocab_size", 0, 200000, "model.embed_tokens.weight"},
        {"query_adapter.rank", 0, 4, "query_adapter.rank"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        patch_i64(&fb, metas[i].key, metas[i].index, metas[i].value, &old);
        expect_load_failure(&fb, metas[i].key, ABC_ERR_FORMAT, metas[i].needle);
        size_t at = find_meta(&fb, metas[i].key);
        if (at) memcpy(fb.data + at + 8 * metas[i].index, &old, 8);
    }

    /* strings */
    size_t at = find_meta(&fb, "model.attention");
    CHECK(at != 0, "model.attention");
    if (at) {
        fb.data[at] = 'X';
        expect_load_failure(&fb, "model.attention", ABC_ERR_FORMAT, "model.attention");
        fb.data[at] = 'b';
    }
    at = find_meta(&fb, "general.architecture");
    if (at) {
        fb.data[at + 4] = '3';
        expect_load_failure(&fb, "architecture", ABC_ERR_UNSUPPORTED, "qwen3_vl");
        fb.data[at + 4] = '2';
    }
    at = find_meta(&fb, "prompt.image");
    if (at) { /* break the placeholder inside the image-only template */
        uint8_t *p = memmem(fb.data + at, 200, "<|image_pad|>", 13);
        CHECK(p != NULL, "placeholder in prompt.image");
        if (p) {
            p[3] = 'X';
            expect_load_failure(&fb, "prompt.image", ABC_ERR_FORMAT, "placeholder");
            p[3] = 'm';
        }
    }

    /* shapes: swap the two dims of a matrix (same byte size, so only the binder can notice) */
    const char *matrices[] = {"model.layers.1.mlp.gate_proj.weight", "visual.merger.mlp.2.weight",
                              "query_adapter.model.layers.0.self_attn.k_proj.lora_B",
                              "mlp_head.linear_layer2.weight"};
    for (size_t i = 0; i < sizeof matrices / sizeof matrices[0]; i++) {
        size_t e = find_tensor(&fb, matrices[i]);
        CHECK(e != 0, "no tensor %s", matrices[i]);
        if (!e) continue;
        CHECK(!matrix_is_square(&fb, e), "%s is square: transposing it proves nothing", matrices[i]);
        swap_matrix_dims(&fb, e);
        expect_load_failure(&fb, matrices[i], ABC_ERR_FORMAT, matrices[i]);
        swap_matrix_dims(&fb, e);
    }
    /* a missing tensor (renamed) and a stray adapter tensor */
    size_t e = find_tensor(&fb, "model.layers.1.self_attn.o_proj.weight");
    if (e) {
        fb.data[e + 64] = 'X';
        expect_load_failure(&fb, "missing o_proj", ABC_ERR_FORMAT, "model.layers.1.self_attn.o_proj.weight");
        fb.data[e + 64] = 'm';
    }
    size_t ea = find_tensor(&fb, "query_adapter.model.layers.0.mlp.up_proj.lora_A");
    size_t eb = find_tensor(&fb, "query_adapter.model.layers.0.mlp.up_proj.lora_B");
    if (ea && eb) { /* both factors renamed to a layer the model lacks */
        fb.data[ea + 64 + 27] = fb.data[eb + 64 + 27] = '7'; /* query_adapter.model.layers.7... */
        expect_load_failure(&fb, "stray adapter", ABC_ERR_FORMAT, "query_adapter.model.layers.7.mlp.up_proj");
        fb.data[eb + 64 + 27] = '0'; /* lora_A alone */
        expect_load_failure(&fb, "lora_B alone", ABC_ERR_FORMAT, "model.layers.0.mlp.up_proj");
        fb.data[ea + 64 + 27] = '0';
    }
    /* a norm weight stored in a matrix dtype: f16 [32, 2] has the same 128 bytes as f32 [32] */
    e = find_tensor(&fb, "model.norm.weight");
    if (e) {
        uint8_t saved[32];
        memcpy(saved, fb.data + e + 4, sizeof saved);
        uint32_t dt = 1, nd = 2;
        uint64_t s1 = 2;
        memcpy(fb.data + e + 4, &dt, 4);
        memcpy(fb.data + e + 8, &nd, 4);
        memcpy(fb.data + e + 24, &s1, 8);
        expect_load_failure(&fb, "f16 norm", ABC_ERR_FORMAT, "model.norm.weight");
        memcpy(fb.data + e + 4, saved, sizeof saved);
    }
    /* untouched again: loads */
    expect_load_failure(&fb, "restored", ABC_OK, "");
    free(fb.data);
}

/* Every allocation failing in turn: a clean error, never a crash or leak. */
static void test_allocation_failures(void) {
    int failures = 0, oks = 0;
    for (long n = 0; n < 400; n += 1) {
        abc_model *m = NULL;
        abc_error err = {0};
        atomic_store(&abc_test_fail_after, n);
        abc_status st = abc_model_load(MODEL_VLM2VEC, NULL, &m, &err);
        abc_context *ctx = NULL;
        if (st == ABC_OK) st = abc_context_new(m, NULL, &ctx, &err);
        float out[32];
        if (st == ABC_OK) {
            int32_t ids[6] = {32, 1697, 304, 264, 3550, 7781};
            st = abc_embed_tokens(ctx, ids, 6, NULL, 0, NULL, ABC_ROLE_AUTO, out, 32);
        }
        atomic_store(&abc_test_fail_after, -1);
        CHECK(st == ABC_OK || st == ABC_ERR_NOMEM, "n=%ld: %s (%s)", n, abc_status_string(st),
              ctx ? abc_context_errmsg(ctx) : err.message);
        if (st == ABC_OK) oks++;
        else failures++;
        abc_context_free(ctx);
        abc_model_free(m);
        if (oks >= 3) break;
    }
    CHECK(failures > 10 && oks > 0, "fault injection reached %d failures, %d successes", failures, oks);

    /* the image path (decode, preprocess, vision tower) on a loaded model */
    failures = oks = 0;
    for (long n = 0; n < 400 && oks < 2; n++) {
        abc_context *ctx = NULL;
        abc_error err = {0};
        atomic_store(&abc_test_fail_after, n);
        abc_status st = abc_context_new(g_vlm2vec, NULL, &ctx, &err);
        if (st == ABC_OK) {
            abc_input in = abc_input_default();
            in.image_path = IMAGE_DIR "palette_color.png.png";
            in.text = "<|image_pad|> what is this?";
            float out[32];
            st = abc_embed(ctx, &in, out, 32);
        }
        atomic_store(&abc_test_fail_after, -1);
        CHECK(st == ABC_OK || st == ABC_ERR_NOMEM, "image n=%ld: %s (%s)", n, abc_status_string(st),
              ctx ? abc_context_errmsg(ctx) : err.message);
        if (st == ABC_OK) oks++;
        else failures++;
        abc_context_free(ctx);
    }
    CHECK(failures > 5 && oks > 0, "image fault injection reached %d failures, %d successes", failures, oks);
}

/* ---- description, timing ---- */

static void test_description(void) {
    CHECK(abc_model_embedding_dim(g_abc) == 32, "dim");
    CHECK(!strcmp(abc_model_preset(g_abc), "abc") && !strcmp(abc_model_preset(g_vlm2vec), "vlm2vec"), "preset");
    const char *d = abc_model_description(g_abc);
    CHECK(strstr(d, "qwen2_vl") && strstr(d, "bidirectional") && strstr(d, "query adapter (role=query): 14 layers"), "%s", d);
    CHECK(strstr(abc_model_description(g_vlm2vec), "causal") != NULL, "vlm2vec description");
    CHECK(abc_model_embedding_dim(NULL) == 0, "NULL model dim");
}

/* abc_model_load_from_memory: the same vectors as the mapped file, the buffer used in place (no copy),
 * misaligned, truncated and NULL buffers refused with their codes. */
static void test_load_from_memory(void) {
    size_t len = 0;
    char *file = test_read_file(MODEL_ABC, &len);
    CHECK(file != NULL, "cannot read %s", MODEL_ABC);
    if (!file) return;
    uint8_t *buf = aligned_alloc(64, (len + 64 + 63) / 64 * 64);
    memcpy(buf, file, len);
    abc_model *mem = NULL;
    abc_error err;
    CHECK(abc_model_load_from_memory(buf, len, NULL, &mem, &err) == ABC_OK, "%s", err.message);
    if (mem) {
        const tensor *t = wf_tensor(&mem->wf, "model.embed_tokens.weight");
        CHECK(t && (const uint8_t *)t->data >= buf && (const uint8_t *)t->data < buf + len, "tensor not used in place");
        char path[512];
        snprintf(path, sizeof path, IMAGE_DIR "%s", CASES[0].image);
        abc_input in = abc_input_default();
        in.image_path = path;
        in.text = CASES[0].text;
        float from_file[32], from_memory[32];
        abc_context *a = new_context(g_abc, 1, NULL), *b = new_context(mem, 1, NULL);
        CHECK(abc_embed(a, &in, from_file, 32) == ABC_OK, "%s", abc_context_errmsg(a));
        CHECK(abc_embed(b, &in, from_memory, 32) == ABC_OK, "%s", abc_context_errmsg(b));
        CHECK(!memcmp(from_file, from_memory, sizeof from_file), "memory-loaded model gives other vectors");
        abc_context_free(a);
        abc_context_free(b);
        abc_model_free(mem);
    }
    memmove(buf + 8, buf, len); /* misaligned copy */
    abc_model *bad = (abc_model *)1;
    CHECK(abc_model_load_from_memory(buf + 8, len, NULL, &bad, &err) == ABC_ERR_INVALID_ARG && !bad &&
              strstr(err.message, "aligned"), "misaligned: %s", err.message);
    memcpy(buf, file, len);
    CHECK(abc_model_load_from_memory(buf, len - 64, NULL, &bad, &err) == ABC_ERR_FORMAT && !bad, "truncated: %s",
          err.message);
    CHECK(abc_model_load_from_memory(buf, 10, NULL, &bad, &err) == ABC_ERR_FORMAT, "tiny: %s", err.message);
    CHECK(abc_model_load_from_memory(NULL, len, NULL, &bad, &err) == ABC_ERR_INVALID_ARG, "NULL data");
    CHECK(abc_model_load_from_memory(buf, len, NULL, NULL, &err) == ABC_ERR_INVALID_ARG, "NULL out");
    free(buf);
    free(file);
}

/* The run-time pixel budget (abc_model_params.min_pixels/max_pixels) bounds the final resize: astronaut
 * (512×512) goes 504×504 after abc's first stage, then 448×448 under max_pixels 200704 (stage 2:
 * β = sqrt(504²/200704) = 1.125, floor(504/β/28)·28 = 448) = 32×32 patches instead of the default 36×36.
 * Bounds below one token, min > max and negative values are refused (phi3_v models: test_phi3v.c). */
static void test_pixel_budget(void) {
    abc_model_params params = abc_model_default_params();
    params.max_pixels = 200704;
    abc_model *small = NULL;
    abc_error err;
    CHECK(abc_model_load(MODEL_ABC, &params, &small, &err) == ABC_OK, "%s", err.message);
    if (!small) return;
    capture cap = {0};
    abc_context *ctx = new_context(small, 2, &cap);
    abc_input in = abc_input_default();
    in.image_path = IMAGE_DIR "astronaut.png";
    in.text = CASES[0].text;
    float budget[32], full[32];
    CHECK(abc_embed(ctx, &in, budget, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    CHECK(cap.pixel_values.ndim == 2 && cap.pixel_values.shape[0] == 32 * 32, "patches %lld, want 1024",
          (long long)cap.pixel_values.shape[0]);
    CHECK(cap.vision_embeds.ndim == 2 && cap.vision_embeds.shape[0] == 256, "image tokens %lld, want 256",
          (long long)cap.vision_embeds.shape[0]);
    abc_context *def = new_context(g_abc, 2, NULL);
    CHECK(abc_embed(def, &in, full, 32) == ABC_OK, "%s", abc_context_errmsg(def));
    test_diff d = test_compare_f32(budget, full, 32);
    printf("  pixel budget 200704 vs default: 1-cos %.3g\n", 1 - d.cosine);
    CHECK(d.max_abs > 0, "a smaller image gave the same vector");
    abc_context_free(ctx);
    abc_context_free(def);
    capture_free(&cap);
    abc_model_free(small);
    abc_model *bad = NULL;
    params.max_pixels = 783;
    CHECK(abc_model_load(MODEL_ABC, &params, &bad, &err) == ABC_ERR_INVALID_ARG && !bad, "783: %s", err.message);
    params.max_pixels = 100000;
    params.min_pixels = 200000;
    CHECK(abc_model_load(MODEL_ABC, &params, &bad, &err) == ABC_ERR_INVALID_ARG && strstr(err.message, "min_pixels"),
          "min > max: %s", err.message);
    params.min_pixels = -1;
    CHECK(abc_model_load(MODEL_ABC, &params, &bad, &err) == ABC_ERR_INVALID_ARG, "negative: %s", err.message);
}

/* abc_version and abc_system_info: the header's version, the kernel path the pools pick. */
static void test_version_and_system_info(void) {
    CHECK(!strcmp(abc_version(), ABC_VERSION_STRING), "%s", abc_version());
    const char *info = abc_system_info();
    CHECK(info == abc_system_info(), "not constant");
    cpu_features f = cpu_features_detect();
    char want[64];
    snprintf(want, sizeof want, "kernels %s;", kernel_path_name(kernel_path_best(&f)));
    CHECK(strstr(info, want) && strstr(info, ABC_VERSION_STRING), "%s (want '%s')", info, want);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_timing(void) {
    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "%s", CASES[0].image);
    abc_context *ctx = new_context(g_abc, 1, NULL);
    abc_input in = abc_input_default();
    in.image_path = path;
    in.text = CASES[0].text;
    float out[32];
    double t0 = now_seconds();
    CHECK(abc_embed(ctx, &in, out, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    printf("  abc_query_astronaut end to end, 1 thread (this build's flags): %.3f s\n", now_seconds() - t0);
    abc_context_free(ctx);
}

int main(void) {
    abc_error err;
    if (abc_model_load(MODEL_ABC, NULL, &g_abc, &err) != ABC_OK ||
        abc_model_load(MODEL_VLM2VEC, NULL, &g_vlm2vec, &err) != ABC_OK) {
        fprintf(stderr, "cannot load the tiny models (make build/tiny-abc.abc build/tiny-vlm2vec.abc): %s\n",
                err.message);
        abc_model_free(g_abc);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN_TEST(test_description);
    RUN_TEST(test_position_rules);
    RUN_TEST(test_pooling_rules);
    RUN_TEST(test_fixture_cases_tokens);
    RUN_TEST(test_fixture_cases_embed);
    RUN_TEST(test_threads_identical);
    RUN_TEST(test_query_adapter_role);
    RUN_TEST(test_image_sources);
    RUN_TEST(test_argument_errors);
    RUN_TEST(test_stage_callback);
    RUN_TEST(test_malformed_models);
    RUN_TEST(test_allocation_failures);
    RUN_TEST(test_load_from_memory);
    RUN_TEST(test_pixel_budget);
    RUN_TEST(test_version_and_system_info);
    RUN_TEST(test_timing);
    abc_model_free(g_abc);
    abc_model_free(g_vlm2vec);
    return test_summary();
}
