/* abc-convert: Hugging Face Qwen2-VL checkpoint (+ PEFT adapters) -> .abc weight file.
 *   abc-convert HF_DIR -o OUT.abc --preset abc|vlm2vec|gme|colqwen2|jina-v4|vlm2vec-phi3v|nomic|colqwen2.5 [--merge-adapter DIR]... [--query-adapter DIR]
 *               [--task-adapter NAME=DIR]... [--task-adapters DIR] [--dtype f32|f16|bf16|q8|q4] [--policy CLASS=DTYPE,...] [--num-crops N] [--threads N] [--quiet] */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: abc-convert HF_DIR -o OUT.abc --preset abc|vlm2vec|gme|colqwen2|jina-v4|vlm2vec-phi3v|nomic|colqwen2.5 [--merge-adapter DIR]... [--query-adapter DIR]\n"
            "                   [--task-adapter NAME=DIR]... [--task-adapters DIR]\n"
            "                   [--dtype f32|f16|bf16|q8|q4] [--policy CLASS=DTYPE,...] [--num-crops N] [--threads N] [--quiet]\n"
            "  HF_DIR            Qwen2-VL, Qwen2.5-VL or Phi-3.5-vision checkpoint (config.json, safetensors, tokenizer.json,\n"
            "                    preprocessor_config.json)\n"
            "  --preset          abc: ABC-Qwen2VL (bidirectional, mean pooling, mlp_head); vlm2vec: VLM2Vec (causal, last token);\n"
            "                    gme: GME-Qwen2-VL (causal, chat prompt, last token, 1-D positions);\n"
            "                    colqwen2: ColQwen2 (causal, one 128-d vector per token from custom_text_proj);\n"
            "                    jina-v4: jina-embeddings-v4 on Qwen2.5-VL (mean pooling, multi-vector head; needs its task adapters);\n"
            "                    vlm2vec-phi3v: VLM2Vec-Full on Phi-3.5-vision (causal, last token);\n"
            "                    nomic: nomic-embed-multimodal on Qwen2.5-VL (causal, last token; merge its adapter);\n"
            "                    colqwen2.5: ColQwen2.5 on Qwen2.5-VL (as colqwen2, its processor's query prompt)\n"
            "  --merge-adapter   PEFT LoRA/DoRA adapter merged into the weights (repeatable, applied in order);\n"
            "                    its modules_to_save (e.g. ABC's mlp_head) replace or add tensors\n"
            "  --query-adapter   PEFT LoRA kept apart and applied at run time for role=query (ABC instruct adapter)\n"
            "  --task-adapter    NAME=DIR: PEFT LoRA kept apart, chosen per call by task name (repeatable; jina-v4:\n"
            "                    retrieval, text-matching, code); the default task is retrieval, else the first\n"
            "  --task-adapters   DIR: every task of one multi-task PEFT LoRA folder (jina-embeddings-v4's adapters/,\n"
            "                    tensors <module>.lora_A.<task>.weight), kept apart as --task-adapter does, the tasks\n"
            "                    in byte order of their names; not with --task-adapter. jina-v4 without either:\n"
            "                    HF_DIR/adapters/ when it is there\n"
            "  --num-crops       phi3_v: HD crops per image stored in the file (default: the checkpoint's num_crops, else 4)\n"
            "  --dtype           storage of the large matrices (default f32; norms and biases are always f32;\n"
            "                    q8: int8 blocks of 32 with a scale each, for matrices whose rows are a multiple of 32;\n"
            "                    q4: 4-bit blocks of 32 with a float16 scale each, by default with the attention\n"
            "                    projections, vision tower, merger and head in q8: see --policy)\n"
            "  --policy          per class of matrices, overriding --dtype: CLASS=DTYPE[,...], CLASS one of attn, mlp\n"
            "                    (gate/up), down (the language model's layers; text = all three), embed (token\n"
            "                    embedding), vision, merger, head; recorded in the file (general.policy), shown by `abc info`\n"
            "  --threads         threads converting while the file is written (default: every online CPU);\n"
            "                    the output does not depend on it\n"
            "  --quiet           no notes and no progress line (the progress line only appears on a terminal)\n");
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

int main(int argc, char **argv) {
    convert_options opt;
    memset(&opt, 0, sizeof opt);
    opt.dtype = ABC_FILE_F32;
    opt.merge_adapters = calloc((size_t)argc, sizeof *opt.merge_adapters);
    opt.task_adapters = calloc((size_t)argc, sizeof *opt.task_adapters);
    if (!opt.merge_adapters || !opt.task_adapters) { fprintf(stderr, "abc-convert: out of memory\n"); free(opt.merge_adapters); free(opt.task_adapters); return 1; }
    int status = 2;
    const char *policy = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(stdout); status = 0; goto done; }
        else if (strcmp(a, "--quiet") == 0) opt.quiet = 1;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--preset") == 0 || strcmp(a, "--merge-adapter") == 0 ||
                 strcmp(a, "--query-adapter") == 0 || strcmp(a, "--dtype") == 0 || strcmp(a, "--num-crops") == 0 ||
                 strcmp(a, "--threads") == 0 || strcmp(a, "--policy") == 0 || strcmp(a, "--task-adapter") == 0 ||
                 strcmp(a, "--task-adapters") == 0) {
            if (!has_value) { fprintf(stderr, "abc-convert: %s needs a value\n", a); goto done; }
            const char *v = argv[++i];
            if (strcmp(a, "-o") == 0) {
                if (opt.out_path) { fprintf(stderr, "abc-convert: -o given twice\n"); goto done; }
                opt.out_path = v;
            } else if (strcmp(a, "--preset") == 0) {
                if (opt.preset) { fprintf(stderr, "abc-convert: --preset given twice\n"); goto done; }
                opt.preset = v;
            } else if (strcmp(a, "--merge-adapter") == 0) {
                opt.merge_adapters[opt.n_merge_adapters++] = v;
            } else if (strcmp(a, "--task-adapter") == 0) {
                opt.task_adapters[opt.n_task_adapters++] = v;
            } else if (strcmp(a, "--task-adapters") == 0) {
                if (opt.task_adapters_dir) { fprintf(stderr, "abc-convert: --task-adapters given twice\n"); goto done; }
                opt.task_adapters_dir = v;
            } else if (strcmp(a, "--num-crops") == 0) {
                char *end;
                long n = strtol(v, &end, 10);
                if (end == v || *end || n < 1 || n > 4096) { fprintf(stderr, "abc-convert: --num-crops needs an integer in [1, 4096], got \"%s\"\n", v); goto done; }
                opt.num_crops = n;
            } else if (strcmp(a, "--threads") == 0) {
                char *end;
                long n = strtol(v, &end, 10);
                if (end == v || *end || n < 1 || n > 1024) { fprintf(stderr, "abc-convert: --threads needs an integer in [1, 1024], got \"%s\"\n", v); goto done; }
                opt.threads = (int)n;
            } else if (strcmp(a, "--query-adapter") == 0) {
                if (opt.query_adapter) { fprintf(stderr, "abc-convert: only one --query-adapter is supported\n"); goto done; }
                opt.query_adapter = v;
            } else if (strcmp(a, "--policy") == 0) {
                if (policy) { fprintf(stderr, "abc-convert: --policy given twice\n"); goto done; }
                policy = v;
            } else if (cv_dtype_parse(v, &opt.dtype) < 0) {
                fprintf(stderr, "abc-convert: unknown --dtype \"%s\" (f32, f16, bf16, q8 or q4)\n", v);
                goto done;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "abc-convert: unknown option %s\n", a);
            usage(stderr);
            goto done;
        } else {
            if (opt.hf_dir) { fprintf(stderr, "abc-convert: more than one input directory (%s, %s)\n", opt.hf_dir, a); goto done; }
            opt.hf_dir = a;
        }
    }
    if (!opt.hf_dir || !opt.out_path || !opt.preset) {
        fprintf(stderr, "abc-convert: HF_DIR, -o OUT.abc and --preset are required\n");
        usage(stderr);
        goto done;
    }
    char err[1024] = "";
    if (!cv_known_preset(opt.preset, err, sizeof err)) { /* the families' table is the one list */
        fprintf(stderr, "abc-convert: %s\n", err);
        goto done;
    }
    if (!host_is_little_endian()) { fprintf(stderr, "abc-convert: error: needs a little-endian host\n"); status = 1; goto done; }
    opt.progress = !opt.quiet && isatty(STDERR_FILENO);
    cv_policy_init(&opt);
    if (policy && cv_policy_parse(&opt, policy, err, sizeof err) < 0) {
        fprintf(stderr, "abc-convert: %s\n", err);
        goto done;
    }
    if (convert_model(&opt, err, sizeof err) != 0) {
        fprintf(stderr, "abc-convert: error: %s\n", err[0] ? err : "conversion failed");
        status = 1;
        goto done;
    }
    if (!opt.quiet) fprintf(stderr, "abc-convert: wrote %s\n", opt.out_path);
    status = 0;
done:
    free(opt.merge_adapters);
    free(opt.task_adapters);
    return status;
}
