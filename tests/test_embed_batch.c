/* Tests of abc_embed_batch (abc.h): rows equal abc_embed one input at a time bit for bit, per-input
 * statuses with NaN rows for the failures and the first failure's message, argument errors, and
 * allocation failures in the middle of a batch.
 *
 * Needs build/tiny-abc.abc (`make test` converts it first) and tests/fixtures/images/. */
#include "../abc.c"

#include "test.h"

#define MODEL_ABC "build/tiny-abc.abc"
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
                            make(NULL, "three", ABC_ROLE_AUTO)};
    float ref[3 * 32], out[3 * 32];
    CHECK(abc_embed_batch(g_ctx, in, 3, ref, NULL) == ABC_OK, "reference batch");
    int failures = 0;
    for (long n = 0; n < 2000; n += 7) {
        abc_status statuses[3];
        atomic_store(&abc_test_fail_after, n);
        abc_status st = abc_embed_batch(g_ctx, in, 3, out, statuses);
        atomic_store(&abc_test_fail_after, -1);
        if (st == ABC_OK) break;
        failures++;
        CHECK(st == ABC_ERR_NOMEM, "n=%ld: %s (%s)", n, abc_status_string(st), abc_context_errmsg(g_ctx));
        for (int i = 0; i < 3; i++)
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
    RUN_TEST(test_arguments);
    RUN_TEST(test_allocation_failures);
    abc_context_free(g_ctx);
    abc_model_free(g_model);
    return test_summary();
}
