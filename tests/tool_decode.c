/* tool_decode: decodes an image (PNG, JPEG, PPM/PGM) with abc_image_load and writes binary PPM (P6).
 *
 *   tool_decode IN OUT.ppm [--crop X Y W H] [--grey]
 *
 * --crop takes a W×H window starting at (X, Y); coordinates wrap around, so a window larger than the
 * image tiles it (tests make odd and huge sizes this way). --grey writes the red channel as PGM (P5).
 * Used by tests/test_jpeg_corpus.sh to compare abc's decoder with djpeg. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abc.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s IN OUT.ppm [--crop X Y W H] [--grey]\n", argv[0]);
        return 2;
    }
    long cx = 0, cy = 0, cw = -1, ch = -1;
    int grey = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--crop") == 0 && i + 4 < argc) {
            cx = atol(argv[i + 1]);
            cy = atol(argv[i + 2]);
            cw = atol(argv[i + 3]);
            ch = atol(argv[i + 4]);
            i += 4;
        } else if (strcmp(argv[i], "--grey") == 0) {
            grey = 1;
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    abc_image img;
    abc_error err;
    abc_status st = abc_image_load(argv[1], 0, &img, &err);
    if (st != ABC_OK) {
        fprintf(stderr, "%s: error %d: %s\n", argv[1], (int)st, err.message);
        return 1;
    }
    if (cw < 0) {
        cw = img.width;
        ch = img.height;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f) {
        perror(argv[2]);
        abc_image_free(&img);
        return 1;
    }
    fprintf(f, "%s\n%ld %ld\n255\n", grey ? "P5" : "P6", cw, ch);
    int channels = grey ? 1 : 3;
    unsigned char *row = malloc((size_t)cw * 3 + 1);
    int bad = row == NULL;
    for (long y = 0; y < ch && !bad; y++) {
        const unsigned char *src = img.rgb + (size_t)((cy + y) % img.height) * (size_t)img.width * 3;
        for (long x = 0; x < cw; x++)
            memcpy(row + x * channels, src + (size_t)((cx + x) % img.width) * 3, (size_t)channels);
        bad |= fwrite(row, (size_t)channels, (size_t)cw, f) != (size_t)cw;
    }
    free(row);
    bad |= fclose(f) != 0;
    abc_image_free(&img);
    return bad;
}
