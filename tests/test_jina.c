/* Task adapters chosen per call and Matryoshka truncation (abc_input.task, abc_input.dim) on preset
 * jina-v4 (build/tiny-jina.abc: a tiny random Qwen2.5-VL + jina's projector + three random task adapters,
 * tests/fixtures/jina-tiny from tests/gen_jina_fixtures.py):
 *   - every task × {query text, passage text, image} against jina's reference embedding;
 *   - the multi-vector output (abc_embed_multi, the projector with the task's LoRA) per token, f32 and q8;
 *   - truncation to 8 and 16 dims against the reference's, and the dims the file refuses;
 *   - unknown / absent task names, tasks on a model without any;
 *   - abc_embed_tokens_ex with a task and a dim gives abc_embed's vector for the same ids and pixels;
 *   - two contexts on one model running different tasks at the same time give the results of one
 *     context alone, bit for bit; abc_embed_batch rows with mixed tasks and dims equal abc_embed;
 *   - malformed task-adapter metadata and a transposed adapter factor are refused at load.
 * The stage-by-stage comparison and the q8 file are in tests/test_jina.sh.
 *
 * Needs build/tiny-jina.abc, build/tiny-jina-q8.abc and build/tiny-abc.abc (`make test` converts them first); writes and removes
 * build/test_jina_corrupt.abc. */
#include "../abc.c"

#include <pthread.h>

#include "npy.h"
#include "test.h"
#include "abc_file_patch.h"

#define MODEL_JINA "build/tiny-jina.abc"
#define MODEL_ABC "build/tiny-abc.abc"
#define FIX "tests/fixtures/jina-tiny/cases/"
#define IMAGE_DIR "tests/fixtures/images/"
#define QUERY "What is the capital of France?"
#define PASSAGE "Paris is the capital and largest city of France."

enum { D = 32, N_CASES = 9, MV = 16, MAX_T = 96 };

static abc_model *g_model;

typedef struct {
    const char *name, *task, *text, *image;
    abc_role role;
} jina_case;

static const jina_case cases[N_CASES] = {
    {"retrieval_query", "retrieval", QUERY, NULL, ABC_ROLE_QUERY},
    {"retrieval_passage", "retrieval", PASSAGE, NULL, ABC_ROLE_CANDIDATE},
    {"retrieval_image", "retrieval", NULL, IMAGE_DIR "camera.png", ABC_ROLE_AUTO},
    {"text-matching_query", "text-matching", QUERY, NULL, ABC_ROLE_QUERY},
    {"text-matching_passage", "text-matching", PASSAGE, NULL, ABC_ROLE_CANDIDATE},
    {"text-matching_image", "text-matching", NULL, IMAGE_DIR "camera.png", ABC_ROLE_AUTO},
    {"code_query", "code", QUERY, NULL, ABC_ROLE_QUERY},
    {"code_passage", "code", PASSAGE, NULL, ABC_ROLE_CANDIDATE},
    {"code_image", "code", NULL, IMAGE_DIR "coffee.png", ABC_ROLE_AUTO},
};

static abc_input input_of(const jina_case *c) {
    abc_input in = abc_input_default();
    in.text = c->text;
    in.image_path = c->image;
    in.role = c->role;
    in.task = c->task;
    return in;
}

/* Reads FIX<name>/<file>.npy, which must hold n float32 values. */
static bool read_ref(const char *name, const char *file, float *out, size_t n) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s/%s.npy", name, file);
    test_npy a;
    bool ok = test_npy_read(path, &a) == 0 && a.dtype == 'f' && a.count == n;
    if (ok) memcpy(out, a.data, n * sizeof *out);
    else fprintf(stderr, "  %s: not %zu float32 values\n", path, n);
    test_npy_free(&a);
    return ok;
}

static double cosine(const float *a, const float *b, int n, double *max_d) {
    double dot = 0, na = 0, nb = 0;
    *max_d = 0;
    for (int i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        *max_d = fmax(*max_d, fabs((double)a[i] - b[i]));
    }
    return dot / sqrt(na * nb);
}

static void test_tasks_listed(void) {
    const char *const *tasks = abc_model_tasks(g_model);
    CHECK(tasks[0] && !strcmp(tasks[0], "retrieval") && tasks[1] && !strcmp(tasks[1], "text-matching") && tasks[2] &&
              !strcmp(tasks[2], "code") && !tasks[3],
          "tasks");
    CHECK(abc_model_default_task(g_model) && !strcmp(abc_model_default_task(g_model), "retrieval"), "default task");
    int n = 0;
    const int *dims = abc_model_matryoshka_dims(g_model, &n);
    CHECK(n == 3 && dims && dims[0] == 8 && dims[1] == 16 && dims[2] == 32, "matryoshka dims (%d)", n);
}

/* Every task and input kind against jina's reference (the fixtures' tolerance: cos ≥ 0.99999, 1e-4). */
static void test_cases_match_reference(void) {
    abc_context *ctx;
    abc_error err;
    CHECK(abc_context_new(g_model, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    for (int i = 0; i < N_CASES; i++) {
        abc_input in = input_of(&cases[i]);
        float out[D], ref[D];
        abc_status st = abc_embed(ctx, &in, out, D);
        CHECK(st == ABC_OK, "%s: %s", cases[i].name, abc_context_errmsg(ctx));
        if (st != ABC_OK || !read_ref(cases[i].name, "embedding", ref, D)) {
            CHECK(0, "%s: no result or reference", cases[i].name);
            continue;
        }
        double max_d, c = cosine(out, ref, D, &max_d);
        printf("  %-22s cos %.9f max|d| %.2g\n", cases[i].name, c, max_d);
        CHECK(c >= 0.99999 && max_d <= 1e-4, "%s: cos %.9f max|d| %.3g", cases[i].name, c, max_d);
        for (int k = 0; k < (i < 3 ? 2 : 1); k++) { /* Matryoshka: 8 dims, and 16 for retrieval's cases */
            const int dim = k ? 16 : 8;
            char file[32];
            snprintf(file, sizeof file, "embedding_dim%d", dim);
            float cut[D], cut_ref[D];
            for (int j = 0; j < D; j++) cut[j] = NAN;
            in.dim = dim;
            CHECK(abc_embed(ctx, &in, cut, (size_t)dim) == ABC_OK, "%s dim %d: %s", cases[i].name, dim,
                  abc_context_errmsg(ctx));
            if (!read_ref(cases[i].name, file, cut_ref, (size_t)dim)) continue;
            c = cosine(cut, cut_ref, dim, &max_d);
            CHECK(c >= 0.99999 && max_d <= 1e-4, "%s dim %d: cos %.9f max|d| %.3g", cases[i].name, dim, c, max_d);
            CHECK(isnan(cut[dim]), "%s: wrote past dim %d", cases[i].name, dim);
            in.dim = 0;
        }
    }
    /* NULL task = the default (retrieval), bit for bit */
    abc_input in = input_of(&cases[0]), dflt = in;
    dflt.task = NULL;
    float a[D], b[D];
    CHECK(abc_embed(ctx, &in, a, D) == ABC_OK && abc_embed(ctx, &dflt, b, D) == ABC_OK &&
              memcmp(a, b, sizeof a) == 0,
          "task NULL is not the default task");
    /* the tasks differ (the adapters really switch) */
    abc_input code = input_of(&cases[6]);
    CHECK(abc_embed(ctx, &code, b, D) == ABC_OK && memcmp(a, b, sizeof a) != 0, "retrieval = code");
    abc_context_free(ctx);
}

/* The multi-vector output (abc_embed_multi): every token through the projector with the task's LoRA,
 * L2-normalised, against jina's reference per token (cos >= 0.99999, max|d| <= 1e-4). q8: as in
 * test_colqwen2.c, this random 32-wide decoder has fragile positions under int8 rounding (token 5 of the
 * query text, tests/test_jina.sh; per-token cosines down to 0.92), so the bar is each case's mean token
 * cosine >= 0.98 (measured 0.9877 at worst, text-matching's query), which a broken q8 path (cosines near 0)
 * cannot reach. The projector's LoRA matters:
 * under the retrieval adapter the code case's vectors differ from code's reference. */
static void test_multi_vector(void) {
    abc_model *q8 = NULL;
    abc_context *ctx, *ctx8 = NULL;
    abc_error err;
    CHECK(abc_model_multi_vector_dim(g_model) == MV, "multi-vector dim %d", abc_model_multi_vector_dim(g_model));
    CHECK(abc_context_new(g_model, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    if (abc_model_load("build/tiny-jina-q8.abc", NULL, &q8, &err) == ABC_OK)
        CHECK(abc_context_new(q8, NULL, &ctx8, &err) == ABC_OK, "%s", err.message);
    else
        CHECK(0, "q8 file: %s", err.message);
    static float out[MAX_T * MV], ref[MAX_T * MV];
    double worst = 1.0, worst8 = 1.0, worst_mean8 = 1.0;
    for (int i = 0; i < N_CASES; i++) {
        abc_input in = input_of(&cases[i]);
        size_t n = 0;
        abc_status st = abc_embed_multi(ctx, &in, out, MAX_T * MV, &n);
        CHECK(st == ABC_OK && n > 0 && n <= MAX_T, "%s: %s (%zu vectors)", cases[i].name, abc_context_errmsg(ctx), n);
        if (st != ABC_OK || !n || n > MAX_T || !read_ref(cases[i].name, "multi_vector", ref, n * MV)) {
            CHECK(0, "%s: no result or reference", cases[i].name);
            continue;
        }
        for (size_t t = 0; t < n; t++) {
            double max_d, c = cosine(out + t * MV, ref + t * MV, MV, &max_d);
            worst = fmin(worst, c);
            CHECK(c >= 0.99999 && max_d <= 1e-4, "%s token %zu: cos %.9f max|d| %.3g", cases[i].name, t, c, max_d);
        }
        if (ctx8 && abc_embed_multi(ctx8, &in, out, MAX_T * MV, &n) == ABC_OK) {
            double mean = 0;
            for (size_t t = 0; t < n; t++) {
                double max_d, c = cosine(out + t * MV, ref + t * MV, MV, &max_d);
                worst8 = fmin(worst8, c);
                mean += c / (double)n;
            }
            worst_mean8 = fmin(worst_mean8, mean);
            CHECK(mean >= 0.98, "%s (q8): mean token cos %.6f", cases[i].name, mean);
        } else {
            CHECK(0, "%s (q8): %s", cases[i].name, ctx8 ? abc_context_errmsg(ctx8) : "no context");
        }
    }
    printf("  multi-vector: worst token cos %.9f (f32); q8 worst token %.6f, worst case mean %.6f\n", worst, worst8,
           worst_mean8);
    /* the code query under the retrieval adapter: not code's reference */
    abc_input in = input_of(&cases[6]);
    in.task = "retrieval";
    size_t n = 0;
    CHECK(abc_embed_multi(ctx, &in, out, MAX_T * MV, &n) == ABC_OK, "%s", abc_context_errmsg(ctx));
    if (n && n <= MAX_T && read_ref(cases[6].name, "multi_vector", ref, n * MV)) {
        double max_d, far = 1.0;
        for (size_t t = 0; t < n; t++) far = fmin(far, cosine(out + t * MV, ref + t * MV, MV, &max_d));
        CHECK(far < 0.9999, "the retrieval adapter gives code's multi-vectors (worst cos %.9f)", far);
    }
    abc_context_free(ctx8);
    abc_model_free(q8);
    abc_context_free(ctx);
}

static void test_bad_task_and_dim(void) {
    abc_context *ctx;
    abc_error err;
    CHECK(abc_context_new(g_model, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    abc_input in = input_of(&cases[0]);
    float out[D];
    in.task = "classification";
    CHECK(abc_embed(ctx, &in, out, D) == ABC_ERR_INVALID_ARG, "unknown task accepted");
    CHECK(strstr(abc_context_errmsg(ctx), "classification") &&
              strstr(abc_context_errmsg(ctx), "retrieval, text-matching, code"),
          "message '%s'", abc_context_errmsg(ctx));
    in.task = "retrieval";
    const int bad_dims[] = {-1, 33, 12, 1};
    for (size_t k = 0; k < sizeof bad_dims / sizeof bad_dims[0]; k++) {
        in.dim = bad_dims[k];
        CHECK(abc_embed(ctx, &in, out, D) == ABC_ERR_INVALID_ARG, "dim %d accepted", bad_dims[k]);
        CHECK(strstr(abc_context_errmsg(ctx), "dim") != NULL, "message '%s'", abc_context_errmsg(ctx));
    }
    in.dim = 32; /* the full width is always allowed */
    CHECK(abc_embed(ctx, &in, out, D) == ABC_OK, "dim 32: %s", abc_context_errmsg(ctx));
    in.dim = 16;
    CHECK(abc_embed(ctx, &in, out, 15) == ABC_ERR_INVALID_ARG, "an output of 15 floats for dim 16");
    /* jina-v4 embeds an image or a text */
    abc_input both = input_of(&cases[2]);
    both.text = "what is it?";
    CHECK(abc_embed(ctx, &both, out, D) == ABC_ERR_UNSUPPORTED, "image + text accepted");
    abc_context_free(ctx);

    abc_model *abc_m;
    CHECK(abc_model_load(MODEL_ABC, NULL, &abc_m, &err) == ABC_OK, "%s", err.message);
    if (!abc_m) return;
    CHECK(abc_model_tasks(abc_m)[0] == NULL && abc_model_default_task(abc_m) == NULL, "abc has no tasks");
    CHECK(abc_context_new(abc_m, NULL, &ctx, &err) == ABC_OK, "%s", err.message);
    abc_input t = abc_input_default();
    t.text = "hello";
    t.task = "retrieval";
    CHECK(abc_embed(ctx, &t, out, D) == ABC_ERR_INVALID_ARG && strstr(abc_context_errmsg(ctx), "no task adapters"),
          "a task on a model without any: '%s'", abc_context_errmsg(ctx));
    t.task = NULL;
    t.dim = 7; /* no Matryoshka list: any dim in [1, full] */
    float cut[7], full[D];
    CHECK(abc_embed(ctx, &t, cut, 7) == ABC_OK, "dim 7 on abc: %s", abc_context_errmsg(ctx));
    t.dim = 0;
    CHECK(abc_embed(ctx, &t, full, D) == ABC_OK, "abc full");
    double n = 0;
    for (int k = 0; k < 7; k++) n += (double)full[k] * full[k];
    double max_d = 0;
    for (int k = 0; k < 7; k++) max_d = fmax(max_d, fabs(cut[k] - full[k] / sqrt(n)));
    CHECK(max_d < 1e-6, "truncation is not the renormalised prefix (max|d| %g)", max_d);
    abc_context_free(ctx);
    abc_model_free(abc_m);
}

/* What abc_embed prepared for an input (its input_ids, pixel_values and resized stages), kept for
 * abc_embed_tokens_ex. */
typedef struct {
    int32_t ids[MAX_T];
    size_t n_ids;
    float *pixels;
    size_t n_patches;
    int64_t resized_h, resized_w;
} captured;

static int capture_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                         const void *data) {
    captured *c = user;
    (void)dtype;
    if (!strcmp(name, ABC_STAGE_INPUT_IDS) && ndim == 1 && shape[0] <= MAX_T) {
        c->n_ids = (size_t)shape[0];
        memcpy(c->ids, data, c->n_ids * sizeof *c->ids);
    } else if (!strcmp(name, ABC_STAGE_PIXEL_VALUES) && ndim == 2) {
        free(c->pixels);
        c->n_patches = (size_t)shape[0];
        c->pixels = malloc(c->n_patches * (size_t)shape[1] * sizeof *c->pixels);
        if (c->pixels) memcpy(c->pixels, data, c->n_patches * (size_t)shape[1] * sizeof *c->pixels);
    } else if (!strcmp(name, ABC_STAGE_RESIZED) && ndim == 3) {
        c->resized_h = shape[0];
        c->resized_w = shape[1];
    }
    return 0;
}

/* abc_embed_tokens_ex on the ids and pixels abc_embed prepared gives abc_embed's vector bit for bit, for
 * every task × input kind × dim (so it runs the task's adapter and truncates as abc_embed does); plain
 * abc_embed_tokens is the default task at full width; a bad task or dim is refused. */
static void test_embed_tokens_task_dim(void) {
    captured cap = {0};
    abc_context_params p = abc_context_default_params();
    p.on_stage = capture_stage;
    p.on_stage_user = &cap;
    abc_context *ctx, *plain;
    abc_error err;
    CHECK(abc_context_new(g_model, &p, &ctx, &err) == ABC_OK, "%s", err.message);
    CHECK(abc_context_new(g_model, NULL, &plain, &err) == ABC_OK, "%s", err.message);
    const int dims[] = {0, 8, 16};
    int compared = 0;
    for (int i = 0; i < N_CASES; i++) {
        for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
            abc_input in = input_of(&cases[i]);
            in.dim = dims[k];
            const int w = dims[k] ? dims[k] : D;
            float want[D], got[D];
            free(cap.pixels);
            memset(&cap, 0, sizeof cap);
            if (abc_embed(ctx, &in, want, D) != ABC_OK || cap.n_ids == 0) {
                CHECK(0, "%s dim %d: %s", cases[i].name, dims[k], abc_context_errmsg(ctx));
                continue;
            }
            int grid[3] = {1, 0, 0};
            if (cap.n_patches) { /* the patch grid from the resized image: patch side² = pixels / patches */
                const int64_t side = (int64_t)sqrt((double)(cap.resized_h * cap.resized_w) / (double)cap.n_patches);
                grid[1] = side ? (int)(cap.resized_h / side) : 0;
                grid[2] = side ? (int)(cap.resized_w / side) : 0;
            }
            memset(got, 0, sizeof got);
            abc_status st = abc_embed_tokens_ex(plain, cap.ids, cap.n_ids, cap.pixels, cap.n_patches,
                                                cap.n_patches ? grid : NULL, cases[i].role, cases[i].task, dims[k],
                                                got, (size_t)w);
            CHECK(st == ABC_OK, "%s dim %d: %s", cases[i].name, dims[k], abc_context_errmsg(plain));
            CHECK(st == ABC_OK && memcmp(got, want, (size_t)w * sizeof *got) == 0,
                  "%s dim %d: abc_embed_tokens_ex differs from abc_embed (first values %.9g vs %.9g)", cases[i].name,
                  dims[k], (double)got[0], (double)want[0]);
            compared += st == ABC_OK;
            if (dims[k] || strcmp(cases[i].task, "retrieval") != 0) continue;
            /* abc_embed_tokens: the default task (retrieval), full width */
            st = abc_embed_tokens(plain, cap.ids, cap.n_ids, cap.pixels, cap.n_patches, cap.n_patches ? grid : NULL,
                                  cases[i].role, got, D);
            CHECK(st == ABC_OK && memcmp(got, want, sizeof want) == 0, "%s: abc_embed_tokens is not the default task",
                  cases[i].name);
        }
    }
    CHECK(compared == N_CASES * 3, "%d of %d comparisons ran", compared, N_CASES * 3);
    /* a task changes the result: code's adapter on retrieval's ids differs */
    float a[D], b[D];
    const int32_t ids[] = {1, 2, 3, 4, 5};
    CHECK(abc_embed_tokens_ex(plain, ids, 5, NULL, 0, NULL, ABC_ROLE_QUERY, "retrieval", 0, a, D) == ABC_OK &&
              abc_embed_tokens_ex(plain, ids, 5, NULL, 0, NULL, ABC_ROLE_QUERY, "code", 0, b, D) == ABC_OK &&
              memcmp(a, b, sizeof a) != 0,
          "the task does not switch the adapter: %s", abc_context_errmsg(plain));
    CHECK(abc_embed_tokens_ex(plain, ids, 5, NULL, 0, NULL, ABC_ROLE_QUERY, "summarize", 0, a, D) ==
                  ABC_ERR_INVALID_ARG && strstr(abc_context_errmsg(plain), "summarize"),
          "unknown task: '%s'", abc_context_errmsg(plain));
    CHECK(abc_embed_tokens_ex(plain, ids, 5, NULL, 0, NULL, ABC_ROLE_QUERY, NULL, 12, a, D) == ABC_ERR_INVALID_ARG &&
              strstr(abc_context_errmsg(plain), "Matryoshka"),
          "dim 12: '%s'", abc_context_errmsg(plain));
    CHECK(abc_embed_tokens_ex(plain, ids, 5, NULL, 0, NULL, ABC_ROLE_QUERY, NULL, 16, a, 15) == ABC_ERR_INVALID_ARG,
          "an output of 15 floats for dim 16");
    free(cap.pixels);
    abc_context_free(plain);
    abc_context_free(ctx);
}

/* Two threads, each with its own context on the shared model, each running its own tasks in a loop. */
typedef struct {
    int first; /* the case it starts at; it walks every case */
    int rounds;
    float out[N_CASES][D];
    int failures;
} worker;

static void *worker_run(void *p) {
    worker *w = p;
    abc_context *ctx;
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    if (abc_context_new(g_model, &cp, &ctx, NULL) != ABC_OK) {
        w->failures++;
        return NULL;
    }
    for (int r = 0; r < w->rounds; r++)
        for (int k = 0; k < N_CASES; k++) {
            const int i = (w->first + k) % N_CASES;
            abc_input in = input_of(&cases[i]);
            float v[D];
            if (abc_embed(ctx, &in, v, D) != ABC_OK) w->failures++;
            else if (r == 0) memcpy(w->out[i], v, sizeof v);
            else if (memcmp(w->out[i], v, sizeof v) != 0) w->failures++;
        }
    abc_context_free(ctx);
    return NULL;
}

static void test_concurrent_contexts(void) {
    float alone[N_CASES][D];
    abc_context *ctx;
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    CHECK(abc_context_new(g_model, &cp, &ctx, NULL) == ABC_OK, "context");
    for (int i = 0; i < N_CASES; i++) {
        abc_input in = input_of(&cases[i]);
        CHECK(abc_embed(ctx, &in, alone[i], D) == ABC_OK, "%s alone", cases[i].name);
    }
    abc_context_free(ctx);
    /* offset by 4 cases: while one thread runs retrieval the other runs text-matching or code */
    static worker w[2] = {{0, 1, {{0}}, 0}, {4, 1, {{0}}, 0}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) CHECK(pthread_create(&th[t], NULL, worker_run, &w[t]) == 0, "thread %d", t);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++) {
        CHECK(w[t].failures == 0, "thread %d: %d failures or changed results", t, w[t].failures);
        for (int i = 0; i < N_CASES; i++)
            CHECK(memcmp(w[t].out[i], alone[i], sizeof alone[i]) == 0, "thread %d %s differs from one context alone", t,
                  cases[i].name);
    }
}

/* abc_embed_batch with mixed tasks and dims (text inputs are packed per task) = abc_embed row by row. */
static void test_batch_mixed_tasks(void) {
    abc_context *ctx;
    CHECK(abc_context_new(g_model, NULL, &ctx, NULL) == ABC_OK, "context");
    abc_input in[N_CASES];
    for (int i = 0; i < N_CASES; i++) {
        in[i] = input_of(&cases[i]);
        in[i].dim = i % 3 == 1 ? 8 : 0;
    }
    float batch[N_CASES * D], single[D];
    CHECK(abc_embed_batch(ctx, in, N_CASES, batch, NULL) == ABC_OK, "%s", abc_context_errmsg(ctx));
    for (int i = 0; i < N_CASES; i++) {
        const int dim = in[i].dim ? in[i].dim : D;
        CHECK(abc_embed(ctx, &in[i], single, D) == ABC_OK, "single %d", i);
        CHECK(memcmp(batch + i * D, single, (size_t)dim * sizeof *single) == 0, "row %d differs from abc_embed", i);
        for (int k = dim; k < D; k++) CHECK(batch[i * D + k] == 0.0f, "row %d: value %d past dim %d not 0", i, k, dim);
    }
    abc_context_free(ctx);
}

/* Malformed task-adapter metadata in a copy of the file: each refused with ABC_ERR_FORMAT and a message. */
static void test_malformed_metadata(void) {
    file_bytes fb = file_bytes_read(MODEL_JINA);
    CHECK(fb.size > 0, "read %s", MODEL_JINA);
    if (!fb.size) return;
    const char *path = "build/test_jina_corrupt.abc";
    struct {
        const char *key, *from, *to, *needle;
    } strings[] = {
        {"task_adapter.names", "code", "xode", "belongs to no layer"},             /* code's tensors orphaned */
        {"task_adapter.names", "retrieval,", "retrieval.", "malformed name"},      /* a '.' in a name */
        {"task_adapter.names", ",code", ",,ode", "malformed name"},                /* an empty name */
        {"task_adapter.default", "retrieval", "retrievaX", "task_adapter.default"},
        {"task_adapter.query_prompt", "text-matching", "text-matchinX", "task_adapter.query_prompt"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        size_t at = find_meta(&fb, strings[i].key);
        CHECK(at != 0, "no metadata %s", strings[i].key);
        uint8_t *p = at ? memmem(fb.data + at, 64, strings[i].from, strlen(strings[i].from)) : NULL;
        CHECK(p != NULL, "%s lacks '%s'", strings[i].key, strings[i].from);
        if (!p) continue;
        memcpy(p, strings[i].to, strlen(strings[i].to));
        expect_load_status(&fb, path, strings[i].key, ABC_ERR_FORMAT, strings[i].needle);
        memcpy(p, strings[i].from, strlen(strings[i].from));
    }
    size_t at = find_meta(&fb, "model.matryoshka_dims");
    CHECK(at != 0, "no model.matryoshka_dims");
    if (at) {
        int64_t old, bad = 33;
        memcpy(&old, fb.data + at + 8, 8);
        memcpy(fb.data + at + 8, &bad, 8);
        expect_load_status(&fb, path, "matryoshka dim 33", ABC_ERR_FORMAT, "model.matryoshka_dims");
        memcpy(fb.data + at + 8, &old, 8);
    }
    /* a task adapter factor transposed (same bytes: only the binder can notice) */
    const char *factor = "task_adapter.code.model.layers.1.self_attn.k_proj.lora_B";
    size_t e = find_tensor(&fb, factor);
    CHECK(e != 0 && !matrix_is_square(&fb, e), "%s missing or square", factor);
    if (e) {
        swap_matrix_dims(&fb, e);
        expect_load_status(&fb, path, factor, ABC_ERR_FORMAT, factor);
        swap_matrix_dims(&fb, e);
    }
    expect_load_status(&fb, path, "restored file", ABC_OK, "");
    free(fb.data);
}

int main(void) {
    abc_error err;
    if (abc_model_load(MODEL_JINA, NULL, &g_model, &err) != ABC_OK) {
        fprintf(stderr, "cannot load %s: %s (run 'make test')\n", MODEL_JINA, err.message);
        printf("RESULT 0 1 0\n");
        return 1;
    }
    RUN_TEST(test_tasks_listed);
    RUN_TEST(test_cases_match_reference);
    RUN_TEST(test_multi_vector);
    RUN_TEST(test_bad_task_and_dim);
    RUN_TEST(test_embed_tokens_task_dim);
    RUN_TEST(test_concurrent_contexts);
    RUN_TEST(test_batch_mixed_tasks);
    RUN_TEST(test_malformed_metadata);
    abc_model_free(g_model);
    return test_summary();
}
