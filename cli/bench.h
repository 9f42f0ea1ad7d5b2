/* bench.h — `abc bench` (cli/bench.c) and its in-memory synthetic models (cli/bench_synth.c). */
#ifndef ABC_CLI_BENCH_H
#define ABC_CLI_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* One synthetic model size; the dimensions are those of the named Hugging Face model. For phi3_v
 * (phi3 = 1) the v_* fields are the CLIP tower's (width, layers run, heads, mlp) and v_image/v_patch
 * its view and patch size; head_hidden and mrope are Qwen2-VL's only. */
typedef struct {
    const char *name;
    int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab;
    int64_t v_embed, v_depth, v_heads, v_mlp, head_hidden;
    int64_t mrope[3];
    int phi3;
    int64_t v_image, v_patch;
} bench_synth_size;

/* The sizes `--synth` accepts (NULL-terminated by name). */
extern const bench_synth_size bench_synth_sizes[];
const bench_synth_size *bench_synth_find(const char *name);

/* Builds the .abc file image of size `s` in memory: preset "abc" or "vlm2vec" (phi3_v:
 * "vlm2vec-phi3v"), dtype "f32", "f16", "bf16" or "q8", filled by `threads` threads. *data is 64-byte
 * aligned (free it with free()); *size is the file's length. Returns 0, or -1 with a message in err. */
int bench_synth_build(const bench_synth_size *s, const char *preset, const char *dtype, int threads, void **data,
                      size_t *size, char *err, size_t errlen);

int cmd_bench(int argc, char **argv);

#endif
