/* Fuzz target: the converter's safetensors reader (model_convert/safetensors.c) on one mutated file;
 * every tensor of an accepted file (up to a million elements) is read back as float32. */
#define _POSIX_C_SOURCE 200809L
#include "model_convert/json.c"
#include "model_convert/util.c"
#include "model_convert/dtype.c"
#include "model_convert/safetensors.c"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.safetensors", data, size);
    st_set set;
    memset(&set, 0, sizeof set);
    char err[512] = "";
    if (st_add_file(&set, path, err, sizeof err) == 0) {
        for (size_t i = 0; i < set.n_tensors; i++) {
            const st_tensor *t = &set.tensors[i];
            uint64_t n = st_numel(t);
            FUZZ_ASSERT(t->offset + t->nbytes <= size, "tensor %zu lies outside the file", i);
            if (n > ((uint64_t)1 << 20)) continue;
            float *dst = malloc(sizeof *dst * (size_t)(n ? n : 1));
            FUZZ_ASSERT(dst, "malloc");
            (void)st_read_f32(&set, t, dst, err, sizeof err);
            free(dst);
        }
    } else {
        FUZZ_ASSERT(err[0], "rejected without a message");
    }
    st_close(&set);
    return 0;
}
