/* SPDX-License-Identifier: MIT */
/* A firmware-style program: embeds an image + instruction with the library built bare
 * (-DABC_BARE_METAL: no threads, no mmap, no file access) on an ARMv7-A core with no OS.
 * The model, the PNG image and the reference embedding are linked into read-only data; the model is
 * used in place; abc_embed works in a static arena sized at build time (ABC_FW_ARENA_BYTES, from
 * abc_embed_arena_size on the build host). Output goes through newlib's semihosting stdout; the
 * last line is "RESULT passed failed skipped" as the test programs print it. */
#include "abc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef ABC_FW_ARENA_BYTES
#error "ABC_FW_ARENA_BYTES: the arena size (the Makefile asks abc_embed_arena_size on the host)"
#endif
#ifndef ABC_FW_TEXT
#define ABC_FW_TEXT "What is the person holding?"
#endif

extern const uint8_t abc_fw_model[], abc_fw_model_end[];
extern const uint8_t abc_fw_image[], abc_fw_image_end[];
extern const uint8_t abc_fw_reference[], abc_fw_reference_end[];

/* The library's allocator (the build defines ABC_MALLOC/ABC_FREE as these): counted, so the program
 * can show that abc_embed makes no call to it. */
static unsigned long fw_allocator_calls;
void *abc_fw_malloc(size_t size) {
    fw_allocator_calls++;
    return malloc(size);
}
void abc_fw_free(void *p) {
    fw_allocator_calls++;
    free(p);
}

static uint8_t arena[ABC_FW_ARENA_BYTES] __attribute__((aligned(64)));

static int passed, failed;
static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (ok) passed++;
    else failed++;
}

/* The float32 payload of a little-endian '<f4' .npy file (format 1.0 or 2.0); NULL when it is not one. */
static const uint8_t *npy_f32(const uint8_t *npy, size_t size, size_t *count) {
    if (size < 12 || memcmp(npy, "\x93NUMPY", 6) != 0) return NULL;
    size_t header;
    if (npy[6] == 1) header = 10 + (size_t)(npy[8] | npy[9] << 8);
    else header = 12 + (size_t)(npy[8] | npy[9] << 8 | (size_t)npy[10] << 16 | (size_t)npy[11] << 24);
    if (header > size) return NULL;
    int f4 = 0; /* the header's dict names the dtype; the bytes before it hold NULs, so no strstr */
    for (size_t i = 10; i + 5 <= header && !f4; i++) f4 = memcmp(npy + i, "'<f4'", 5) == 0;
    if (!f4) return NULL;
    *count = (size - header) / 4;
    return npy + header;
}

int main(void) {
    printf("abc bare-metal: %s\n", abc_system_info());
    abc_error err;
    abc_model *model = NULL;
    const size_t model_size = (size_t)(abc_fw_model_end - abc_fw_model);
    clock_t t0 = clock();
    if (abc_model_load_from_memory(abc_fw_model, model_size, NULL, &model, &err) != ABC_OK) {
        printf("FAIL model: %s\nRESULT 0 1 0\n", err.message);
        return 1;
    }
    /* newlib's printf here has no %zu: sizes go out as unsigned long */
    printf("model: %lu bytes in read-only data at %p, used in place; preset %s\n", (unsigned long)model_size,
           (const void *)abc_fw_model, abc_model_preset(model));

    abc_context_params cp = abc_context_default_params();
    cp.arena = arena;
    cp.arena_size = sizeof arena;
    abc_context *ctx = NULL;
    if (abc_context_new(model, &cp, &ctx, &err) != ABC_OK) {
        printf("FAIL context: %s\nRESULT 0 1 0\n", err.message);
        return 1;
    }
    abc_model *from_path = NULL;
    check(abc_model_load("model.abc", NULL, &from_path, &err) == ABC_ERR_UNSUPPORTED && !from_path,
          "abc_model_load from a path is ABC_ERR_UNSUPPORTED (no file access)");
    abc_image from_file;
    check(abc_image_load("image.png", 0, &from_file, &err) == ABC_ERR_UNSUPPORTED && !from_file.rgb,
          "abc_image_load from a path is ABC_ERR_UNSUPPORTED");

    const int dim = abc_model_embedding_dim(model);
    float *vec = malloc((size_t)dim * sizeof *vec);
    abc_input in = abc_input_default();
    in.image_data = abc_fw_image;
    in.image_size = (size_t)(abc_fw_image_end - abc_fw_image);
    in.text = ABC_FW_TEXT;
    in.role = ABC_ROLE_QUERY;
    const unsigned long calls_before = fw_allocator_calls;
    clock_t t1 = clock();
    abc_status st = vec ? abc_embed(ctx, &in, vec, (size_t)dim) : ABC_ERR_NOMEM;
    clock_t t2 = clock();
    const unsigned long calls = fw_allocator_calls - calls_before;
    if (st != ABC_OK) printf("abc_embed: %s\n", abc_context_errmsg(ctx));
    check(st == ABC_OK, "abc_embed of the linked PNG + instruction");
    printf("arena: %lu bytes (static, .bss), %lu used by abc_embed\n", (unsigned long)sizeof arena,
           (unsigned long)abc_context_arena_used(ctx));
    printf("allocator calls during abc_embed: %lu\n", calls);
    check(calls == 0, "abc_embed never called the allocator");

    size_t n_ref = 0;
    const uint8_t *ref = npy_f32(abc_fw_reference, (size_t)(abc_fw_reference_end - abc_fw_reference), &n_ref);
    check(ref && n_ref == (size_t)dim, "reference embedding has the model's dimension");
    if (st == ABC_OK && ref && n_ref == (size_t)dim) {
        double dot = 0, na = 0, nb = 0, max_d = 0;
        for (int i = 0; i < dim; i++) {
            float r;
            memcpy(&r, ref + 4 * (size_t)i, 4);
            dot += (double)vec[i] * r;
            na += (double)vec[i] * vec[i];
            nb += (double)r * r;
            double d = fabs((double)vec[i] - r);
            if (d > max_d) max_d = d;
        }
        const double cosine = dot / sqrt(na * nb);
        printf("embedding: %d floats, cosine to the reference %.9f, max|d| %.3g\n", dim, cosine, max_d);
        check(cosine >= 0.99999 && max_d <= 1e-4, "embedding matches the reference (cosine >= 0.99999, max|d| <= 1e-4)");
    }
    printf("time (emulated clock): load %.2f s, embed %.2f s\n", (double)(t1 - t0) / CLOCKS_PER_SEC,
           (double)(t2 - t1) / CLOCKS_PER_SEC);
    free(vec);
    abc_context_free(ctx);
    abc_model_free(model);
    printf("RESULT %d %d 0\n", passed, failed);
    return failed ? 1 : 0;
}
