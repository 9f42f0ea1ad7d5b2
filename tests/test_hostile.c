/* Hostile inputs (issue #19): the files of tests/fixtures/hostile/ (MANIFEST: each with the status it
 * must get), and the cases that need the file system: FIFOs, devices and directories given as image,
 * model or .npy; a 10 MB one-character text (refused at the token limit before it is all tokenized); a
 * model file truncated while loaded with load_into_memory (the embedding does not change). Each refusal
 * must also be quick: nothing here may decode, allocate or tokenize its way to the answer. */
#include "abc.c"
#include "cli/npy.c"
#include "test.h"

#include <time.h>

#define HOSTILE_DIR "tests/fixtures/hostile/"
#define MODEL_ABC "build/tiny-abc.abc"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *const status_names[] = {"ABC_OK", "ABC_ERR_INVALID_ARG", "ABC_ERR_IO", "ABC_ERR_FORMAT",
                                           "ABC_ERR_VERSION", "ABC_ERR_NOMEM", "ABC_ERR_IMAGE", "ABC_ERR_UNSUPPORTED",
                                           "ABC_ERR_TOO_LARGE", "ABC_ERR_UTF8", "ABC_ERR_PROMPT", "ABC_ERR_STOPPED",
                                           "ABC_ERR_INTERNAL"};

static int status_by_name(const char *name) {
    for (int i = 0; i < (int)(sizeof status_names / sizeof status_names[0]); i++)
        if (!strcmp(name, status_names[i])) return i;
    return -1;
}

/* Sanitizer builds and qemu are slow; a refusal that does the work it should avoid takes several seconds
 * even natively at -O2 (the hollow JPEG 6.8 s, 10 MB of "a" 4.7 s before the fixes). */
#define QUICK_SECONDS 2.0

static void test_manifest(void) {
    char **lines;
    int n = test_read_lines(HOSTILE_DIR "MANIFEST", &lines);
    CHECK(n >= 6, "MANIFEST has %d entries", n);
    for (int i = 0; i < n; i++) {
        char file[256], kind[64], expected[64], path[512];
        if (sscanf(lines[i], "%255s %63s %63s", file, kind, expected) != 3) {
            CHECK(0, "bad MANIFEST line '%s'", lines[i]);
            continue;
        }
        snprintf(path, sizeof path, HOSTILE_DIR "%s", file);
        double t0 = seconds_now();
        if (!strncmp(kind, "image", 5)) {
            size_t max_pixels = kind[5] == '@' ? (size_t)strtoull(kind + 6, NULL, 10) : 0;
            abc_image img = {0};
            abc_error err = {0};
            abc_status st = abc_image_load(path, max_pixels, &img, &err);
            CHECK((int)st == status_by_name(expected), "%s: %s, expected %s (%s)", file, status_names[st], expected, err.message);
            CHECK(st == ABC_OK || (!img.rgb && err.message[0]), "%s: failure without a message or with an image", file);
            abc_image_free(&img);
        } else if (!strcmp(kind, "npy")) {
            npy_array a;
            char msg[512] = "";
            int rc = npy_read(path, &a, msg, sizeof msg);
            CHECK(rc == -1 && !strcmp(expected, "error") && !a.data && msg[0], "%s: npy_read returned %d (%s)", file, rc, msg);
            if (rc == 0) npy_free(&a);
        } else if (!strcmp(kind, "model")) {
            for (int in_memory = 0; in_memory < 2; in_memory++) {
                abc_model_params p = abc_model_default_params();
                p.load_into_memory = in_memory;
                abc_model *m = NULL;
                abc_error err = {0};
                abc_status st = abc_model_load(path, &p, &m, &err);
                CHECK((int)st == status_by_name(expected) && !m, "%s (in memory %d): %s, expected %s (%s)", file, in_memory,
                      status_names[st], expected, err.message);
                abc_model_free(m);
            }
        } else {
            CHECK(0, "unknown kind '%s' in MANIFEST", kind);
        }
        double dt = seconds_now() - t0;
        CHECK(dt < QUICK_SECONDS, "%s (%s) took %.2f s", file, kind, dt);
        printf("     %-24s %-16s %s in %.3f s\n", file, kind, expected, dt);
    }
    test_free_lines(lines, n);
}

/* FIFOs, devices and directories: refused at once (a FIFO used to block the open forever). */
static void test_not_regular_files(void) {
    const char *fifo = "build/test_hostile.fifo";
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s: %s", fifo, strerror(errno));
    const char *paths[] = {fifo, "/dev/zero", "build"};
    for (int i = 0; i < 3; i++) {
        double t0 = seconds_now();
        abc_image img = {0};
        abc_error err = {0};
        abc_status st = abc_image_load(paths[i], 0, &img, &err);
        CHECK(st == ABC_ERR_IO && strstr(err.message, "not a regular file"), "image %s: %s", paths[i], err.message);
        abc_model *m = NULL;
        st = abc_model_load(paths[i], NULL, &m, &err);
        CHECK(st == ABC_ERR_IO && !m && strstr(err.message, "not a regular file"), "model %s: %s", paths[i], err.message);
        npy_array a;
        char msg[512];
        CHECK(npy_read(paths[i], &a, msg, sizeof msg) == -1 && strstr(msg, "not a regular file"), "npy %s: %s", paths[i], msg);
        CHECK(seconds_now() - t0 < QUICK_SECONDS, "%s took %.2f s", paths[i], seconds_now() - t0);
    }
    unlink(fifo);
}

/* An image file larger than 8 bytes per allowed pixel + 1 MiB is refused before it is read. */
static void test_image_file_bound(void) {
    const char *big = "build/test_hostile_big.png";
    FILE *f = fopen(big, "wb");
    CHECK(f != NULL, "cannot create %s", big);
    if (!f) return;
    static char block[1 << 16];
    for (int i = 0; i < 40; i++) fwrite(block, 1, sizeof block, f); /* 2.5 MiB */
    fclose(f);
    abc_image img = {0};
    abc_error err = {0};
    abc_status st = abc_image_load(big, 1000, &img, &err); /* bound: 8000 bytes + 1 MiB */
    CHECK(st == ABC_ERR_TOO_LARGE && strstr(err.message, "2621440 bytes, more than 1056576"), "%s", err.message);
    st = abc_image_load(big, 0, &img, &err); /* read (default bound 1.6 GB), then not an image */
    CHECK(st == ABC_ERR_IMAGE, "%s", err.message);
    unlink(big);
}

static abc_model *load_or_skip(const char *path, int in_memory) {
    abc_model_params p = abc_model_default_params();
    p.load_into_memory = in_memory;
    abc_model *m = NULL;
    abc_error err;
    if (abc_model_load(path, &p, &m, &err) != ABC_OK) {
        CHECK(0, "cannot load %s: %s (make build/tiny-abc.abc)", path, err.message);
        return NULL;
    }
    return m;
}

/* 10 MB of one character: refused at the token limit, long before 10 MB are tokenized (4.7 s before). */
static void test_long_text(void) {
    abc_model *m = load_or_skip(MODEL_ABC, 0);
    if (!m) return;
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    abc_context *ctx;
    abc_error err;
    CHECK(abc_context_new(m, &cp, &ctx, &err) == ABC_OK, "%s", err.message);
    const size_t n = 10u << 20;
    char *text = malloc(n + 1);
    float out[4096];
    const char fill[] = {'a', ' ', '1', '.'};
    for (int k = 0; k < 4; k++) {
        memset(text, fill[k], n);
        text[n] = 0;
        abc_input in = abc_input_default();
        in.text = text;
        double t0 = seconds_now();
        abc_status st = abc_embed(ctx, &in, out, 4096);
        double dt = seconds_now() - t0;
        CHECK(st == ABC_ERR_TOO_LARGE, "'%c' x 10 MB: %s", fill[k], abc_context_errmsg(ctx));
        CHECK(dt < 2.5 * QUICK_SECONDS, "'%c' x 10 MB took %.2f s", fill[k], dt);
        printf("     10 MB of '%c': %s in %.3f s\n", fill[k], abc_context_errmsg(ctx), dt);
    }
    /* Just over the limit is refused, just under accepted: the early refusal never refuses what fits. */
    abc_model_params p = abc_model_default_params();
    abc_model_free(m);
    abc_context_free(ctx);
    p.max_tokens = 64;
    CHECK(abc_model_load(MODEL_ABC, &p, &m, &err) == ABC_OK, "%s", err.message);
    CHECK(abc_context_new(m, &cp, &ctx, &err) == ABC_OK, "%s", err.message);
    int_vec ids = {0};
    for (size_t len = 1; len < 400; len += 3) {
        memset(text, 'a', len);
        text[len] = 0;
        ids.len = 0;
        CHECK(tokenizer_encode(model_tokenizer(m), text, len, &ids, &err) == ABC_OK, "%s", err.message);
        size_t full = ids.len;
        ids.len = 0;
        abc_status st = tokenizer_encode_max(model_tokenizer(m), text, len, 64, &ids, &err);
        CHECK(full > 64 ? st == ABC_ERR_TOO_LARGE : (st == ABC_OK && ids.len == full), "%zu bytes: %zu tokens, status %d", len,
              full, (int)st);
    }
    int_vec_free(&ids);
    free(text);
    abc_context_free(ctx);
    abc_model_free(m);
}

static int copy_file(const char *from, const char *to) {
    size_t len;
    char *data = test_read_file(from, &len);
    if (!data) return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = 0;
    free(data);
    return ok ? 0 : -1;
}

/* A model read into memory does not care what happens to its file afterwards (a mapped one would die
 * with SIGBUS on the next embedding after a truncation). */
static void test_truncated_after_load(void) {
    const char *copy = "build/test_hostile_model.abc";
    CHECK(copy_file(MODEL_ABC, copy) == 0, "cannot copy %s", MODEL_ABC);
    abc_model *mapped = load_or_skip(MODEL_ABC, 0), *m = load_or_skip(copy, 1);
    if (!m || !mapped) {
        abc_model_free(m);
        abc_model_free(mapped);
        return;
    }
    CHECK(truncate(copy, 100) == 0, "truncate: %s", strerror(errno));
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    abc_context *c1, *c2;
    abc_error err;
    CHECK(abc_context_new(m, &cp, &c1, &err) == ABC_OK && abc_context_new(mapped, &cp, &c2, &err) == ABC_OK, "%s", err.message);
    abc_input in = abc_input_default();
    in.text = "a text embedded after its model file was truncated";
    float a[4096], b[4096];
    const size_t dim = (size_t)abc_model_embedding_dim(m);
    CHECK(abc_embed(c1, &in, a, dim) == ABC_OK, "%s", abc_context_errmsg(c1));
    CHECK(abc_embed(c2, &in, b, dim) == ABC_OK, "%s", abc_context_errmsg(c2));
    CHECK(!memcmp(a, b, dim * sizeof *a), "the in-memory model's embedding differs from the mapped one's");
    abc_context_free(c1);
    abc_context_free(c2);
    abc_model_free(m);
    abc_model_free(mapped);
    unlink(copy);
}

int main(void) {
    RUN_TEST(test_manifest);
    RUN_TEST(test_not_regular_files);
    RUN_TEST(test_image_file_bound);
    RUN_TEST(test_long_text);
    RUN_TEST(test_truncated_after_load);
    return test_summary();
}
