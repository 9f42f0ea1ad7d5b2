/* Fuzz target: abc_model_load on a mutated .abc file (seed: tests/fuzz/corpus/model, the tiny model with a
 * 320-token vocabulary from tests/fuzz/gen_model_seed.sh, so one load costs microseconds), mapped or read
 * into memory (the input's length decides), then a short use of a model that loads: its description, a
 * tokenization and, for one input in 16, an embedding of a text and of a 28x28 image with an instruction,
 * under 64k-pixel and 256-token limits. */
#include "abc.c"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.abc", data, size);
    abc_model_params p = abc_model_default_params();
    p.max_image_pixels = 1 << 16;
    p.max_tokens = 256;
    p.load_into_memory = (int)(size & 1);
    abc_model *m = NULL;
    abc_error err;
    abc_status st = abc_model_load(path, &p, &m, &err);
    if (st != ABC_OK) {
        FUZZ_ASSERT(!m && err.code == st && err.message[0], "status %d without its message", (int)st);
        return 0;
    }
    /* Every model that loads is described and tokenizes a text; one in 16 (chosen by the input's bytes, so
     * a finding replays) also embeds a text and an image: a context and an embedding cost several times
     * a load, and most mutations that load only changed tensor values. */
    FUZZ_ASSERT(abc_model_description(m)[0], "a loaded model without a description");
    int32_t ids[64];
    size_t n_ids;
    static const char text[] = "<|im_start|>user\nHello, wörld<|im_end|>";
    st = abc_tokenize(m, text, sizeof text - 1, ids, 64, &n_ids, &err);
    FUZZ_ASSERT(st == ABC_OK || st == ABC_ERR_INVALID_ARG, "tokenize: %s", err.message);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i += 64) h = (h ^ data[i]) * 16777619u;
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    abc_context *ctx = NULL;
    if (h % 16 == 0 && abc_context_new(m, &cp, &ctx, &err) == ABC_OK) {
        const int dim = abc_model_embedding_dim(m);
        float *out = malloc(sizeof *out * (size_t)(dim > 0 ? dim : 1));
        static uint8_t rgb[28 * 28 * 3];
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 7);
        abc_input in = abc_input_default();
        in.text = "a photo of a cat";
        st = abc_embed(ctx, &in, out, (size_t)dim);
        FUZZ_ASSERT(st == ABC_OK || abc_context_errmsg(ctx)[0], "status %d without a message", (int)st);
        in.rgb = rgb;
        in.rgb_width = in.rgb_height = 28;
        in.text = "what is this?";
        st = abc_embed(ctx, &in, out, (size_t)dim);
        FUZZ_ASSERT(st == ABC_OK || abc_context_errmsg(ctx)[0], "status %d without a message", (int)st);
        free(out);
        abc_context_free(ctx);
    }
    abc_model_free(m);
    return 0;
}
