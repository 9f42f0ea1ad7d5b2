/* Fuzz target: the command line's .npy reader (cli/npy.c: --input-ids, --pixel-values and the test
 * tools). An accepted array must hold exactly the elements its shape says, and survive a write and a
 * second read unchanged. */
#include "cli/npy.c"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("in.npy", data, size);
    npy_array a, b;
    char err[512] = "";
    if (npy_read(path, &a, err, sizeof err) != 0) {
        FUZZ_ASSERT(err[0] && !a.data, "rejected without a message");
        return 0;
    }
    size_t count = 1;
    for (int i = 0; i < a.ndim; i++) count *= (size_t)a.shape[i];
    FUZZ_ASSERT(count == a.count, "count %zu, shape product %zu", a.count, count);
    FUZZ_ASSERT(a.count * npy_dtype_size(a.dtype) <= size, "more data than the file holds");
    char again[600];
    snprintf(again, sizeof again, "%s/again.npy", fuzz_scratch_dir());
    FUZZ_ASSERT(npy_write(again, a.dtype, a.ndim, a.shape, a.data, err, sizeof err) == 0, "write: %s", err);
    FUZZ_ASSERT(npy_read(again, &b, err, sizeof err) == 0, "read back: %s", err);
    FUZZ_ASSERT(b.dtype == a.dtype && b.ndim == a.ndim && b.count == a.count &&
                    !memcmp(b.shape, a.shape, sizeof a.shape[0] * (size_t)a.ndim) &&
                    (a.count == 0 || !memcmp(a.data, b.data, a.count * npy_dtype_size(a.dtype))),
                "the array changed on a write and read");
    npy_free(&a);
    npy_free(&b);
    return 0;
}
