/* SPDX-License-Identifier: MIT */
/* Build-host helper for the bare-metal example: prints the arena bytes abc_embed needs for one input
 * (abc_embed_arena_size), so the firmware's static arena can be sized at compile time. Built with the
 * firmware's library options (one thread, scalar kernels): a 64-bit host's figure bounds the 32-bit
 * target's, whose pointers and sizes are smaller.
 * Usage: arena_size MODEL.abc IMAGE TEXT */
#include "abc.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.abc IMAGE TEXT\n", argv[0]);
        return 2;
    }
    abc_error err;
    abc_model *model;
    if (abc_model_load(argv[1], NULL, &model, &err) != ABC_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.message);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    unsigned char *image = n > 0 ? malloc((size_t)n) : NULL;
    if (!image || fseek(f, 0, SEEK_SET) != 0 || fread(image, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    abc_input in = abc_input_default();
    in.image_data = image;
    in.image_size = (size_t)n;
    in.text = argv[3];
    in.role = ABC_ROLE_QUERY;
    size_t bytes = 0;
    if (abc_embed_arena_size(model, NULL, &in, &bytes, &err) != ABC_OK) {
        fprintf(stderr, "abc_embed_arena_size: %s\n", err.message);
        return 1;
    }
    printf("%zu\n", bytes);
    free(image);
    abc_model_free(model);
    return 0;
}
