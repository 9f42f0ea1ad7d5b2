/* Fuzz target: image decoding from memory (PNG with its inflate, baseline and progressive JPEG, PPM/PGM)
 * with a 4-megapixel limit and the default decode budget. A decoded image must have the size its
 * status promises; a refusal must carry its code and a message. */
#include "abc.c"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    abc_image img;
    abc_error err;
    const size_t max_pixels = (size_t)1 << 22;
    abc_status st = abc_image_decode_budget(data, size, max_pixels, 0, &img, &err);
    if (st == ABC_OK) {
        FUZZ_ASSERT(img.width > 0 && img.height > 0 && img.rgb, "empty image accepted");
        FUZZ_ASSERT((size_t)img.width * (size_t)img.height <= max_pixels, "%dx%d over the limit", img.width, img.height);
        FUZZ_ASSERT((uint64_t)img.width * (uint64_t)img.height <= (uint64_t)ABC_DEFAULT_MAX_DECODE_RATIO * size,
                    "%dx%d from %zu bytes is over the decode budget", img.width, img.height, size);
        volatile uint8_t last = img.rgb[(size_t)img.width * (size_t)img.height * 3 - 1];
        (void)last;
        abc_image_free(&img);
    } else {
        FUZZ_ASSERT(err.code == st && err.message[0], "status %d without its message", (int)st);
        FUZZ_ASSERT(!img.rgb, "output left allocated on failure");
    }
    return 0;
}
