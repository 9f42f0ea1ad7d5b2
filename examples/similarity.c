/* SPDX-License-Identifier: MIT */
/* similarity.c — the README's C example: embeds an image + instruction (a query) and a text (a
 * candidate) with one model and prints their similarity.
 *
 *   make lib && cc -I. examples/similarity.c build/libabc.a -lm -lpthread -o similarity
 *   ./similarity build/tiny-abc.abc tests/fixtures/images/astronaut.png
 *
 * Prints "query <d values>", "candidate <d values>" and "similarity S" (the dot product: vectors are
 * L2-normalised); exit status 1 with the library's message on any failure. */
#include "abc.h"

#include <stdio.h>
#include <stdlib.h>

static void print_vector(const char *label, const float *v, int dim) {
    printf("%s", label);
    for (int i = 0; i < dim; i++) printf(" %.9g", v[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    const char *model_path = argc > 1 ? argv[1] : "build/tiny-abc.abc";
    const char *image_path = argc > 2 ? argv[2] : "tests/fixtures/images/astronaut.png";
    abc_error err;
    abc_model *model;
    if (abc_model_load(model_path, NULL, &model, &err) != ABC_OK) {
        fprintf(stderr, "%s: %s\n", abc_status_string(err.code), err.message);
        return 1;
    }
    abc_context *ctx;
    if (abc_context_new(model, NULL, &ctx, &err) != ABC_OK) {
        fprintf(stderr, "%s: %s\n", abc_status_string(err.code), err.message);
        abc_model_free(model);
        return 1;
    }
    const int dim = abc_model_embedding_dim(model);
    float *query = malloc((size_t)dim * sizeof *query), *cand = malloc((size_t)dim * sizeof *cand);
    int status = 1;
    if (!query || !cand) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    abc_input in = abc_input_default();
    in.image_path = image_path;
    in.text = "What is the person holding?"; /* image + text: a query (ABC's instruct adapter on) */
    if (abc_embed(ctx, &in, query, (size_t)dim) != ABC_OK) {
        fprintf(stderr, "query: %s\n", abc_context_errmsg(ctx));
        goto done;
    }
    in = abc_input_default();
    in.text = "a person in a space suit"; /* text only: a candidate */
    if (abc_embed(ctx, &in, cand, (size_t)dim) != ABC_OK) {
        fprintf(stderr, "candidate: %s\n", abc_context_errmsg(ctx));
        goto done;
    }
    float score = 0;
    for (int i = 0; i < dim; i++) score += query[i] * cand[i];
    print_vector("query", query, dim);
    print_vector("candidate", cand, dim);
    printf("similarity %.6f\n", score);
    status = 0;
done:
    free(query);
    free(cand);
    abc_context_free(ctx);
    abc_model_free(model);
    return status;
}
