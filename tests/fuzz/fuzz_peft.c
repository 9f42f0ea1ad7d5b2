/* Fuzz target: PEFT adapter reading (model_convert/peft.c). The input is a little container: a 4-byte
 * little-endian length L, L bytes of adapter_config.json, then adapter_model.safetensors. An adapter that
 * loads has each of its LoRA/DoRA modules merged into a zero weight when it is small (≤ 64k elements). */
#define _POSIX_C_SOURCE 200809L
#include "model_convert/json.c"
#include "model_convert/util.c"
#include "model_convert/dtype.c"
#include "model_convert/safetensors.c"
#include "model_convert/peft.c"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    size_t cfg_len = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (cfg_len > size - 4) return 0;
    fuzz_write_file("adapter_config.json", data + 4, cfg_len);
    fuzz_write_file("adapter_model.safetensors", data + 4 + cfg_len, size - 4 - cfg_len);
    peft_adapter a;
    memset(&a, 0, sizeof a);
    char err[512] = "";
    if (peft_load(fuzz_scratch_dir(), &a, err, sizeof err) == 0) {
        for (size_t i = 0; i < a.n_modules; i++) {
            const lora_module *m = &a.modules[i];
            FUZZ_ASSERT(m->A && m->B && m->A->ndim == 2 && m->B->ndim == 2, "module %s without 2-D A and B", m->module);
            int64_t out = m->B->shape[0], in = m->A->shape[1];
            if (out <= 0 || in <= 0 || out * in > 65536) continue;
            float *w = calloc((size_t)(out * in), sizeof *w);
            FUZZ_ASSERT(w, "calloc");
            (void)peft_merge(&a, m, w, 0, out, in, err, sizeof err);
            free(w);
        }
    } else {
        FUZZ_ASSERT(err[0], "rejected without a message");
    }
    peft_free(&a); /* on failure too: the converter's contract (convert.c frees a failed adapter) */
    return 0;
}
