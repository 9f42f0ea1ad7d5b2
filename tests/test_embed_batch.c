/* Tests of abc_embed_batch (abc.h): rows equal abc_embed one input at a time bit for bit, per-input
 * statuses with NaN rows for the failures and the first failure's message, argument errors, and
 * allocation failures in the middle of a batch. Packed text batches: on every tiny model (bidirectional
 * + mean + query adapter, causal + last token, Phi-3's su rope), at 1 and 2 threads, in any order and
 * mixed with images and failures, each row equals the input embedded alone; the packs really hold
 * several sequences.
 *
 * Needs build/tiny-abc.abc, build/tiny-vlm2vec.abc and build/tiny-phi3v.abc (`make test` converts them
 * first) and tests/fixtures/images/. */
#include "../abc.c"

#include "test.h"

#define MODEL_ABC "build/tiny-abc.abc"
#define MODEL_VLM2VEC "build/tiny-vlm2vec.abc"
#define MODEL_PHI3V "build/tiny-phi3v.abc"
#define IMAGE_DIR "tests/fixtures/images/"

static abc_model *g_model;
static abc_context *g_ctx;

static abc_input make(const char *image, const char *text, abc_role role) {
    abc_input in = abc_input_default();
    in.image_path = image;
    in.text = text;
    in.role = role;
    return in;
}

static void test_rows_equal_single(void) {
    const abc_input in[] = {
        make(IMAGE_DIR "astronaut.png", "What is the person holding?", ABC_ROLE_QUERY),
        make(NULL, "a cup of coffee on a wooden table", ABC_ROLE_CANDIDATE),
        make(IMAGE_DIR "coffee.png", NULL, ABC_ROLE_AUTO),
        make(NULL, "hello", ABC_ROLE_AUTO),
    };
    enum { N = sizeof in / sizeof in[0], D = 32 };
    CHECK(abc_model_embedding_dim(g_model) == D, "dim %d", abc_model_embedding_dim(g_model));
    float batch[N * D], single[N * D];
    abc_status statuses[N];
    for (int i = 0; i < N; i++) statuses[i] = ABC_ERR_INTERNAL;
    abc_status st = abc_embed_batch(g_ctx, in, N, batch, statuses);
    CHECK(st == ABC_OK, "%s: %s", abc_status_string(st), abc_context_errmsg(g_ctx));
    CHECK(strcmp(abc_context_errmsg(g_ctx), "") == 0, "message after success: '%s'", abc_context_errmsg(g_ctx));
    for (int i = 0; i < N; i++) {
        CHECK(statuses[i] == ABC_OK, "input %d: %s", i, abc_status_string(statuses[i]));
        CHECK(abc_embed(g_ctx, &in[i], single + i * D, D) == ABC_OK, "single %d", i);
    }
    CHECK(memcmp(batch, single, sizeof batch) == 0, "batch rows differ from abc_embed one at a time");
    double norm = 0;
    for (int k = 0; k < D; k++) norm += (double)batch[D + k] * batch[D + k];
    CHECK(fabs(norm - 1) < 1e-5, "row 1 is not a unit vector (|v|^2 = %g)", norm);
    /* statuses may be NULL */
    float again[N * D];
    CHECK(abc_embed_batch(g_ctx, in, N, again, NULL) == ABC_OK, "statuses NULL");
    CHECK(memcmp(again, batch, sizeof batch) == 0, "second batch differs");
}

static void test_per_input_status(void) {
    const abc_input in[] = {
        make(NULL, "first", ABC_ROLE_AUTO),
        make(IMAGE_DIR "does_not_exist.png", NULL, ABC_ROLE_AUTO),
        make(NULL, "caf\xe9", ABC_ROLE_AUTO), /* invalid UTF-8 */
        make(NULL, NULL, ABC_ROLE_AUTO),      /* nothing to embed */
        make(NULL, "last", ABC_ROLE_AUTO),
    };
    enum { N = sizeof in / sizeof in[0], D = 32 };
    float out[N * D], ref[D];
    abc_status statuses[N];
    abc_status st = abc_embed_batch(g_ctx, in, N, out, statuses);
    CHECK(st == ABC_ERR_IO, "returns the first failure's status, got %s", abc_status_string(st));
    CHECK(strncmp(abc_context_errmsg(g_ctx), "input 1: ", 9) == 0 && strstr(abc_context_errmsg(g_ctx), "does_not_exist"),
          "message '%s'", abc_context_errmsg(g_ctx));
    const abc_status want[N] = {ABC_OK, ABC_ERR_IO, ABC_ERR_UTF8, ABC_ERR_INVALID_ARG, ABC_OK};
    for (int i = 0; i < N; i++) {
        CHECK(statuses[i] == want[i], "input %d: %s, expected %s", i, abc_status_string(statuses[i]),
              abc_status_string(want[i]));
        bool all_nan = true, any_nan = false;
        for (int k = 0; k < D; k++) all_nan &= isnan(out[i * D + k]), any_nan |= isnan(out[i * D + k]) != 0;
        CHECK(want[i] == ABC_OK ? !any_nan : all_nan, "input %d: row NaN-filled iff it failed", i);
    }
    CHECK(abc_embed(g_ctx, &in[4], ref, D) == ABC_OK && memcmp(ref, out + 4 * D, sizeof ref) == 0,
          "the input after the failures is still embedded exactly");
}

/* Texts of 1 to ~40 words: with each model's template, some at most GEMV_MAX_ROWS tokens, most longer. */
static const char *const k_texts[] = {
    "hi",
    "a dog",
    "red car",
    "What is the person holding?",
    "a cup of coffee on a wooden table next to an open notebook",
    "the quick brown fox jumps over the lazy dog",
    "Find an image that matches the given caption: two children playing football on a sunny beach",
    "ok",
    "Represent the given sentence for retrieving relevant images: a bowl of ramen with a soft-boiled egg, "
    "green onions, sliced pork and seaweed, steaming on a dark table in a small restaurant at night",
    "snow",
    "Which city is shown in the photograph, and in what season was it taken?",
    "caf\xc3\xa9 au lait",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "an astronaut",
};
#define N_TEXTS (int)(sizeof k_texts / sizeof k_texts[0])

/* Raw prompts of a few tokens: sequences of at most GEMV_MAX_ROWS tokens under every template. */
static const char *const k_short_prompts[] = {"hi", "a dog", "red car", "ok", "snow", "1 2 3"};
#define N_SHORT (int)(sizeof k_short_prompts / sizeof k_short_prompts[0])

static abc_input make_prompt(const char *prompt, abc_role role) {
    abc_input in = make(NULL, NULL, role);
    in.prompt = prompt;
    return in;
}

/* The texts in several roles, short raw prompts, an image input and a failing one among them. */
static int packed_inputs(abc_input *in, bool reversed) {
    int n = 0;
    for (int t = 0; t < N_SHORT; t++)
        in[n++] = make_prompt(k_short_prompts[reversed ? N_SHORT - 1 - t : t], t % 2 ? ABC_ROLE_QUERY : ABC_ROLE_AUTO);
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < N_TEXTS; t++) {
            int k = reversed ? N_TEXTS - 1 - t : t;
            in[n++] = make(NULL, k_texts[k], r == 0 ? ABC_ROLE_AUTO : r == 1 ? ABC_ROLE_QUERY : ABC_ROLE_CANDIDATE);
            if (n == 7) in[n++] = make(IMAGE_DIR "coffee.png", "a drink", ABC_ROLE_AUTO);
            if (n == 20) in[n++] = make(NULL, "caf\xe9", ABC_ROLE_AUTO); /* invalid UTF-8 */
        }
    return n;
}

static void check_packed_model(const char *path, int max_threads) {
    abc_model *model = NULL;
    abc_error err;
    if (abc_model_load(path, NULL, &model, &err) != ABC_OK) {
        CHECK(false, "cannot load %s: %s", path, err.message);
        return;
    }
    const int D = abc_model_embedding_dim(model);
    enum { MAX_IN = 3 * N_TEXTS + N_SHORT + 2 };
    abc_input in[MAX_IN], rev[MAX_IN];
    const int n = packed_inputs(in, false);
    CHECK(packed_inputs(rev, true) == n, "same count");
    float *single = malloc((size_t)n * D * sizeof *single), *batch = malloc((size_t)n * D * sizeof *batch);
    float *single_rev = malloc((size_t)n * D * sizeof *single_rev);
    abc_status *statuses = malloc((size_t)n * sizeof *statuses);
    for (int threads = max_threads; threads >= 1; threads--) {
        abc_context_params cp = abc_context_default_params();
        cp.n_threads = threads;
        abc_context *ctx = NULL;
        CHECK(abc_context_new(model, &cp, &ctx, &err) == ABC_OK, "context: %s", err.message);
        if (!ctx) break;
        int failures = 0, failures_rev = 0;
        for (int i = 0; i < n; i++) {
            failures += abc_embed(ctx, &in[i], single + (size_t)i * D, (size_t)D) != ABC_OK;
            failures_rev += abc_embed(ctx, &rev[i], single_rev + (size_t)i * D, (size_t)D) != ABC_OK;
        }
        CHECK(failures == 1 && failures_rev == 1, "%s: %d and %d single inputs failed, expected the invalid UTF-8 one",
              path, failures, failures_rev);
        abc_status st = abc_embed_batch(ctx, in, (size_t)n, batch, statuses);
        CHECK(st == ABC_ERR_UTF8, "%s: batch returns %s (%s)", path, abc_status_string(st), abc_context_errmsg(ctx));
        for (int i = 0; i < n; i++) {
            if (statuses[i] != ABC_OK) {
                CHECK(in[i].text && in[i].text[3] == '\xe9', "%s: input %d failed: %s", path, i, abc_status_string(statuses[i]));
                continue;
            }
            CHECK(memcmp(batch + (size_t)i * D, single + (size_t)i * D, (size_t)D * sizeof(float)) == 0,
                  "%s, %d threads: packed row %d ('%s') differs from the input alone", path, threads, i,
                  in[i].text ? in[i].text : in[i].prompt);
        }
        CHECK(abc_embed_batch(ctx, rev, (size_t)n, batch, statuses) == ABC_ERR_UTF8, "reversed batch");
        for (int i = 0; i < n; i++)
            if (statuses[i] == ABC_OK)
                CHECK(memcmp(batch + (size_t)i * D, single_rev + (size_t)i * D, (size_t)D * sizeof(float)) == 0,
                      "%s, %d threads: reversed batch row %d differs", path, threads, i);
        abc_context_free(ctx);
    }
    free(single);
    free(single_rev);
    free(batch);
    free(statuses);
    abc_model_free(model);
}

static void test_packed_equals_single(void) {
    check_packed_model(MODEL_ABC, 2); /* results never depend on the thread count: one model at 1 and 2 is enough */
    check_packed_model(MODEL_VLM2VEC, 1);
    check_packed_model(MODEL_PHI3V, 1);
}

/* The packing itself (what makes batches fast): sequences of one kind share a pack, the kinds stay
 * apart, and a full pack is flushed before the next sequence joins. */
static void test_packs_hold_several(void) {
    const abc_model *m = g_model;
    batch_run b = {g_ctx, NULL, (size_t)abc_model_embedding_dim(m), NULL, ABC_OK, 0, {ABC_OK, ""}, NULL, NULL};
    b.packs = calloc(BATCH_PACKS, sizeof *b.packs);
    float *out = malloc(64 * b.dim * sizeof *out);
    b.out = out;
    int long_seqs = 0, short_seqs = 0, short_text = -1;
    for (int t = 0; t < N_TEXTS + N_SHORT; t++) {
        abc_input in = t < N_TEXTS ? make(NULL, k_texts[t], ABC_ROLE_CANDIDATE)
                                   : make_prompt(k_short_prompts[t - N_TEXTS], ABC_ROLE_CANDIDATE);
        model_sequence seq = {0};
        bool packed = false;
        CHECK(prepare_input(g_ctx, &in, &seq) == ABC_OK, "prepare %d", t);
        CHECK(pack_add(&b, &seq, (size_t)t, &packed) == ABC_OK && packed, "text %d packed", t);
        if (seq.ids.len <= GEMV_MAX_ROWS) short_seqs++, short_text = t;
        else long_seqs++;
        model_sequence_free(&seq);
    }
    CHECK(short_seqs >= 2 && long_seqs >= 2, "the texts give %d short and %d long sequences", short_seqs, long_seqs);
    CHECK(b.packs[0].n == long_seqs && b.packs[1].n == short_seqs, "packs of %d long and %d short sequences",
          b.packs[0].n, b.packs[1].n);
    CHECK(b.packs[2].n == 0 && b.packs[3].n == 0, "no query-adapter packs for candidates");
    CHECK(b.packs[1].max_len <= GEMV_MAX_ROWS && b.packs[0].max_len > GEMV_MAX_ROWS, "path rows %lld / %lld",
          (long long)b.packs[1].max_len, (long long)b.packs[0].max_len);
    for (int k = 0; k < 2; k++) pack_flush(&b, &b.packs[k], ADAPTER_NONE);
    CHECK(b.first == ABC_OK && b.packs[0].n == 0 && b.packs[1].n == 0, "flushed");
    CHECK(g_ctx->pool->path_rows == 0, "path_rows reset after a pack");
    for (int t = 0; t < N_TEXTS + N_SHORT; t++) {
        float ref[64];
        abc_input in = t < N_TEXTS ? make(NULL, k_texts[t], ABC_ROLE_CANDIDATE)
                                   : make_prompt(k_short_prompts[t - N_TEXTS], ABC_ROLE_CANDIDATE);
        CHECK(abc_embed(g_ctx, &in, ref, b.dim) == ABC_OK, "single %d", t);
        CHECK(memcmp(ref, out + (size_t)t * b.dim, b.dim * sizeof(float)) == 0, "packed text %d differs", t);
    }
    /* a full short pack flushes before the next joins */
    text_pack *p = &b.packs[1];
    int added = 0;
    for (int k = 0; k < 40 && b.first == ABC_OK && short_text >= 0; k++) {
        abc_input in = make_prompt(k_short_prompts[short_text - N_TEXTS], ABC_ROLE_CANDIDATE);
        model_sequence seq = {0};
        bool packed = false;
        CHECK(prepare_input(g_ctx, &in, &seq) == ABC_OK && pack_add(&b, &seq, (size_t)(k % 64), &packed) == ABC_OK,
              "add %d", k);
        added++;
        CHECK(p->start[p->n] <= PACK_SHORT_TOKENS, "a short pack holds %lld tokens", (long long)p->start[p->n]);
        model_sequence_free(&seq);
    }
    CHECK(added == 40 && p->n < 40, "40 short sequences did not all stay in one pack (%d)", p->n);
    pack_flush(&b, p, ADAPTER_NONE);
    free(b.packs);
    free(out);
}

static void test_arguments(void) {
    abc_input in = make(NULL, "x", ABC_ROLE_AUTO);
    float out[32];
    abc_status s;
    CHECK(abc_embed_batch(NULL, &in, 1, out, &s) == ABC_ERR_INVALID_ARG, "NULL context");
    CHECK(abc_embed_batch(g_ctx, NULL, 1, out, &s) == ABC_ERR_INVALID_ARG, "NULL inputs");
    CHECK(abc_embed_batch(g_ctx, &in, 1, NULL, &s) == ABC_ERR_INVALID_ARG, "NULL out");
    CHECK(strstr(abc_context_errmsg(g_ctx), "out is NULL") != NULL, "message '%s'", abc_context_errmsg(g_ctx));
    CHECK(abc_embed_batch(g_ctx, NULL, 0, NULL, NULL) == ABC_OK, "n = 0 does nothing");
    CHECK(abc_embed_batch(g_ctx, &in, SIZE_MAX / 8, out, NULL) == ABC_ERR_INVALID_ARG, "n·D overflows");
}

static void test_allocation_failures(void) {
    const abc_input in[] = {make(NULL, "one", ABC_ROLE_AUTO), make(IMAGE_DIR "coffee.png", NULL, ABC_ROLE_AUTO),
                            make(NULL, "three", ABC_ROLE_AUTO), make(NULL, "four", ABC_ROLE_AUTO)};
    float ref[4 * 32], out[4 * 32];
    CHECK(abc_embed_batch(g_ctx, in, 4, ref, NULL) == ABC_OK, "reference batch");
    int failures = 0;
    /* a failed allocation of the packs only makes every input go alone: successes come before the end */
    for (long n = 0, ok_in_a_row = 0; n < 2000 && ok_in_a_row < 8; n += 7) {
        abc_status statuses[4];
        atomic_store(&abc_test_fail_after, n);
        abc_status st = abc_embed_batch(g_ctx, in, 4, out, statuses);
        atomic_store(&abc_test_fail_after, -1);
        ok_in_a_row = st == ABC_OK ? ok_in_a_row + 1 : 0;
        if (st == ABC_OK) {
            CHECK(memcmp(out, ref, sizeof ref) == 0, "n=%ld: a batch that succeeded differs", n);
            continue;
        }
        failures++;
        CHECK(st == ABC_ERR_NOMEM, "n=%ld: %s (%s)", n, abc_status_string(st), abc_context_errmsg(g_ctx));
        for (int i = 0; i < 4; i++)
            if (statuses[i] == ABC_OK)
                CHECK(memcmp(out + i * 32, ref + i * 32, 32 * sizeof(float)) == 0, "n=%ld: row %d differs", n, i);
    }
    CHECK(failures > 3, "fault injection reached only %d failing batches", failures);
}

int main(void) {
    abc_error err;
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 2;
    if (abc_model_load(MODEL_ABC, NULL, &g_model, &err) != ABC_OK || abc_context_new(g_model, &cp, &g_ctx, &err) != ABC_OK) {
        fprintf(stderr, "cannot load %s (make build/tiny-abc.abc): %s\n", MODEL_ABC, err.message);
        abc_model_free(g_model);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN_TEST(test_rows_equal_single);
    RUN_TEST(test_per_input_status);
    RUN_TEST(test_packed_equals_single);
    RUN_TEST(test_packs_hold_several);
    RUN_TEST(test_arguments);
    RUN_TEST(test_allocation_failures);
    abc_context_free(g_ctx);
    abc_model_free(g_model);
    return test_summary();
}
