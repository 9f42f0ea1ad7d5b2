/* Memory under the caller's control (issue 25): the ABC_MALLOC/ABC_FREE hooks, abc_embed_arena_size and a
 * context's arena. The library is built here with counting hooks, so "abc_embed never calls the
 * allocator" is a count of zero, and the arena's embeddings must equal the allocator's bit for bit and
 * the fixture reference within its tolerance. Needs build/tiny-abc.abc (make build/tiny-abc.abc). */
#define _GNU_SOURCE 1 /* as abc.c, which is included after <stdlib.h> here */
#include <stdlib.h>
static long hook_calls; /* ABC_MALLOC + ABC_FREE calls */
static void *count_malloc(size_t n) {
    hook_calls++;
    return malloc(n);
}
static void count_free(void *p) {
    hook_calls++;
    free(p);
}
#define ABC_MALLOC(n) count_malloc(n)
#define ABC_FREE(p) count_free(p)
#include "abc.c"
#undef free /* this file's own memory is the C library's */
#include "test.h"
#include "npy.h"

#define MODEL "build/tiny-abc.abc"
#define IMAGE "tests/fixtures/images/astronaut.png"
#define TEXT "What is the person holding?"
#define REFERENCE "tests/fixtures/qwen2vl-tiny/cases/abc_query_astronaut/embedding.npy"

static abc_model *g_model;
static uint8_t *g_png;
static size_t g_png_size;

static abc_input query_input(void) {
    abc_input in = abc_input_default();
    in.image_data = g_png;
    in.image_size = g_png_size;
    in.text = TEXT;
    in.role = ABC_ROLE_QUERY;
    return in;
}

/* An embedding on a fresh context: arena of `arena_size` bytes (0: none), `n_threads`. Returns the status;
 * *calls gets the hook calls made during abc_embed alone, *used the arena's high-water mark. */
static abc_status embed_on(const abc_input *in, size_t arena_size, int n_threads, float *out, long *calls,
                           size_t *used, char *message) {
    void *arena = arena_size ? aligned_alloc(64, (arena_size + 63) / 64 * 64) : NULL;
    abc_context_params p = abc_context_default_params();
    p.n_threads = n_threads;
    p.arena = arena;
    p.arena_size = arena_size;
    abc_context *ctx;
    abc_error err;
    abc_status st = abc_context_new(g_model, &p, &ctx, &err);
    if (st != ABC_OK) {
        free(arena);
        return st;
    }
    long before = hook_calls;
    st = abc_embed(ctx, in, out, 32);
    *calls = hook_calls - before;
    *used = abc_context_arena_used(ctx);
    if (message) snprintf(message, 256, "%s", abc_context_errmsg(ctx));
    abc_context_free(ctx);
    free(arena);
    return st;
}

static void test_hooks_used(void) {
    /* the model load and a context go through ABC_MALLOC/ABC_FREE */
    long before = hook_calls;
    abc_context *ctx;
    CHECK(abc_context_new(g_model, NULL, &ctx, NULL) == ABC_OK, "context");
    abc_context_free(ctx);
    CHECK(hook_calls - before >= 4, "only %ld hook calls for a context", hook_calls - before);
    /* blocks from the hooks are 64-byte aligned without posix_memalign */
    void *p = xmalloc(100), *q = xmalloc_aligned(1000);
    CHECK(p && q && (uintptr_t)q % 64 == 0, "aligned");
    memset(p, 7, 100);
    p = xrealloc(p, 5000);
    CHECK(p && ((uint8_t *)p)[99] == 7, "realloc keeps the contents");
    xfree(p);
    xfree(q);
}

static void test_arena_embedding(void) {
    abc_input in = query_input();
    size_t need = 0;
    abc_error err;
    CHECK(abc_embed_arena_size(g_model, NULL, &in, &need, &err) == ABC_OK, "%s", err.message);
    CHECK(need > 0, "arena size %zu", need);
    printf("  arena for %s + instruction: %zu bytes\n", IMAGE, need);

    float heap[32], in_arena[32];
    long calls;
    size_t used;
    char message[256];
    CHECK(embed_on(&in, 0, 1, heap, &calls, &used, NULL) == ABC_OK, "heap embed");
    CHECK(calls > 0, "the allocator was not used without an arena (%ld calls)", calls);
    CHECK(embed_on(&in, need, 1, in_arena, &calls, &used, message) == ABC_OK, "arena embed: %s", message);
    CHECK(calls == 0, "abc_embed called the allocator %ld times with an arena", calls);
    CHECK(used == need, "arena used %zu, abc_embed_arena_size said %zu", used, need);
    CHECK(memcmp(heap, in_arena, sizeof heap) == 0, "arena and allocator embeddings differ");

    test_npy ref;
    CHECK(test_npy_read(REFERENCE, &ref) == 0 && ref.count == 32, "reference");
    if (ref.count == 32) {
        double dot = 0, na = 0, nb = 0, max_d = 0;
        const float *r = ref.data;
        for (int i = 0; i < 32; i++) {
            dot += (double)in_arena[i] * r[i];
            na += (double)in_arena[i] * in_arena[i];
            nb += (double)r[i] * r[i];
            max_d = fmax(max_d, fabs((double)in_arena[i] - r[i]));
        }
        double cosine = dot / sqrt(na * nb);
        printf("  arena embedding vs reference: cosine %.9f, max|d| %.3g\n", cosine, max_d);
        CHECK(cosine >= 0.99999 && max_d <= 1e-4, "cosine %.9f max|d| %.3g", cosine, max_d);
    }
    test_npy_free(&ref);

    /* 64 bytes (one block) short of what is needed: refused cleanly, still without the allocator */
    float short_out[32];
    CHECK(embed_on(&in, need - 64, 1, short_out, &calls, &used, message) == ABC_ERR_NOMEM, "too small an arena");
    CHECK(calls == 0, "a failing arena call used the allocator %ld times", calls);
    CHECK(strstr(message, "arena") != NULL, "message: %s", message);
}

/* Two calls on one arena context: the second starts from an empty arena and gives the same vector. */
static void test_arena_reused(void) {
    abc_input in = query_input();
    size_t need = 0;
    CHECK(abc_embed_arena_size(g_model, NULL, &in, &need, NULL) == ABC_OK, "size");
    void *arena = aligned_alloc(64, (need + 63) / 64 * 64);
    abc_context_params p = abc_context_default_params();
    p.n_threads = 1;
    p.arena = arena;
    p.arena_size = need;
    abc_context *ctx;
    CHECK(abc_context_new(g_model, &p, &ctx, NULL) == ABC_OK, "context");
    float a[32], b[32];
    abc_input text_only = abc_input_default();
    text_only.text = "a cup of coffee";
    long before = hook_calls;
    CHECK(abc_embed(ctx, &in, a, 32) == ABC_OK, "first: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed(ctx, &text_only, b, 32) == ABC_OK, "text: %s", abc_context_errmsg(ctx));
    CHECK(abc_embed(ctx, &in, b, 32) == ABC_OK, "again: %s", abc_context_errmsg(ctx));
    CHECK(hook_calls == before, "%ld allocator calls", hook_calls - before);
    CHECK(memcmp(a, b, sizeof a) == 0, "second call differs");
    abc_context_free(ctx);
    free(arena);
}

/* A size without pixels: the need of any RGB image of that size; several threads need no allocator either. */
static void test_arena_size_from_dimensions(void) {
    abc_image img;
    abc_error err;
    CHECK(abc_image_decode(g_png, g_png_size, 0, &img, &err) == ABC_OK, "%s", err.message);
    abc_input sized = abc_input_default();
    sized.rgb_width = img.width;
    sized.rgb_height = img.height;
    sized.text = TEXT;
    sized.role = ABC_ROLE_QUERY;
    abc_context_params p = abc_context_default_params();
    p.n_threads = 2;
    size_t need = 0;
    CHECK(abc_embed_arena_size(g_model, &p, &sized, &need, &err) == ABC_OK, "%s", err.message);
    abc_input in = sized;
    in.rgb = img.rgb;
    float heap[32], in_arena[32];
    long calls;
    size_t used;
    char message[256];
    CHECK(embed_on(&in, 0, 2, heap, &calls, &used, NULL) == ABC_OK, "heap");
    CHECK(embed_on(&in, need, 2, in_arena, &calls, &used, message) == ABC_OK, "arena: %s", message);
    CHECK(calls == 0 && used == need, "%ld calls, used %zu of %zu", calls, used, need);
    CHECK(memcmp(heap, in_arena, sizeof heap) == 0, "2 threads: arena and allocator embeddings differ");
    sized.rgb_width = -1;
    CHECK(abc_embed_arena_size(g_model, &p, &sized, &need, NULL) == ABC_ERR_INVALID_ARG, "bad size");
    abc_image_free(&img);
}

/* The stage callback is the caller's code: what it gets from the library there is its own, not the arena's
 * (it must survive the abc_embed that called it). */
static abc_image g_from_callback;
static int decode_in_callback(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                              const void *data) {
    (void)user, (void)dtype, (void)ndim, (void)shape, (void)data;
    if (strcmp(name, ABC_STAGE_DECODED) == 0 && !g_from_callback.rgb)
        abc_image_decode(g_png, g_png_size, 0, &g_from_callback, NULL);
    return 0;
}
static void test_arena_callback_allocates(void) {
    abc_input in = query_input();
    size_t need = 0;
    CHECK(abc_embed_arena_size(g_model, NULL, &in, &need, NULL) == ABC_OK, "size");
    void *arena = aligned_alloc(64, (need + 63) / 64 * 64);
    abc_context_params p = abc_context_default_params();
    p.n_threads = 1;
    p.arena = arena;
    p.arena_size = need;
    p.on_stage = decode_in_callback;
    abc_context *ctx;
    CHECK(abc_context_new(g_model, &p, &ctx, NULL) == ABC_OK, "context");
    float v[32];
    CHECK(abc_embed(ctx, &in, v, 32) == ABC_OK, "%s", abc_context_errmsg(ctx));
    const uint8_t *rgb = g_from_callback.rgb;
    CHECK(rgb && (rgb < (uint8_t *)arena || rgb >= (uint8_t *)arena + need), "the callback's image is in the arena");
    CHECK(abc_context_arena_used(ctx) == need, "used %zu of %zu", abc_context_arena_used(ctx), need);
    abc_context_free(ctx);
    free(arena);
    abc_image_free(&g_from_callback); /* after the arena is gone: from the allocator */
}

int main(void) {
    abc_error err;
    if (abc_model_load(MODEL, NULL, &g_model, &err) != ABC_OK) {
        fprintf(stderr, "cannot load %s (make build/tiny-abc.abc): %s\n", MODEL, err.message);
        printf("RESULT 0 1 0\n");
        return 1;
    }
    g_png = (uint8_t *)test_read_file(IMAGE, &g_png_size);
    if (!g_png) {
        fprintf(stderr, "cannot read %s\n", IMAGE);
        printf("RESULT 0 1 0\n");
        return 1;
    }
    RUN_TEST(test_hooks_used);
    RUN_TEST(test_arena_embedding);
    RUN_TEST(test_arena_reused);
    RUN_TEST(test_arena_size_from_dimensions);
    RUN_TEST(test_arena_callback_allocates);
    free(g_png);
    abc_model_free(g_model);
    return test_summary();
}
