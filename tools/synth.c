/* abc-synth — writes the synthetic Qwen2-VL checkpoints of docs/testing.md#synthetic-full-size-checkpoints,
 * natively and streaming.
 *
 *   abc-synth qwen2vl-2b|qwen2vl-7b|qwen25vl-3b|phi35v|CONFIG.json OUTDIR [--head-adapter DIR] [--tokenizer PATH]
 *             [--threads N] [--head-hidden N] [--jina DIR] [--colqwen-adapter DIR] [--extras-only]
 *
 * Every value of every tensor follows a rule (a counter-based splitmix64 stream seeded by the tensor's
 * name), so any program can rebuild the same checkpoint bit for bit without copying gigabytes. The files
 * written are byte-identical to those of the reference Python writer: the bf16
 * shards, model.safetensors.index.json and, for the named presets, config.json. Alongside them go the
 * files a converter needs that the Python writer leaves out: preprocessor_config.json (Qwen2-VL's) and
 * tokenizer.json (copied; the synthetic models use the real Qwen2 vocabulary).
 *
 * With CONFIG.json the config is copied verbatim (the Python writer re-serialises it, which only
 * changes whitespace). --head-adapter DIR also writes ABC's PEFT head adapter (write_head_adapter):
 * an inert rank-1 LoRA on every q_proj (lora_B = 0) and mlp_head as modules_to_save.
 *
 * phi35v (or a CONFIG.json with model_type phi3_v) applies the same rule to the tensors of
 * microsoft/Phi-3.5-vision-instruct's hub layout (fused qkv_proj / gate_up_proj, the whole CLIP
 * ViT-L/14-336 tower incl. its last layer and post_layernorm, glb_GN [1,1,4C], sub_GN [1,1,1,4C],
 * img_projection, an untied lm_head), by hub name. One reading of the rule is fixed here: its
 * `embed_tokens` case is the token embedding only; the image tower's names, which all start with
 * model.vision_embed_tokens., follow the other cases (norm, bias, fan-in). No Qwen2-VL name is
 * affected. Alongside: Phi-3.5-V's config.json (real rope factors), its preprocessor_config.json
 * (num_crops 4) and tokenizer.json (copied; default tests/fixtures/phi35v-tiny/tokenizer.json).
 *
 * qwen25vl-3b (or a CONFIG.json with model_type qwen2_5_vl) applies the rule to Qwen2.5-VL-3B-Instruct's
 * hub layout (the ViT's RMSNorm weights, gated MLP with biases, ln_q without bias), with that model's
 * config.json; for benchmarks only (no Python writer or reference outputs exist for it). --jina and --colqwen-adapter add what presets jina-v4 and
 * colqwen2.5 need on top of it (write_jina, write_colqwen_adapter; docs/testing.md "Preset extras").
 *
 * The model is never held in memory: each tensor is generated in chunks by a few threads and written
 * straight to its shard.
 */
#define _POSIX_C_SOURCE 200809L
#include "../model_convert/json.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARD_BYTES 2000000000ull              /* the Python writer's shard size */
#define CHUNK_VALUES ((size_t)1 << 24)         /* values generated per parallel step (32 MB of bf16) */
#define MAX_DIMS 5
#define MAX_THREADS 64
#define DEFAULT_TOKENIZER "tests/fixtures/qwen2vl-tiny/base/tokenizer.json"
#define DEFAULT_PHI3_TOKENIZER "tests/fixtures/phi35v-tiny/tokenizer.json" /* Llama-2 vocabulary + Phi-3's added tokens */

/* ---- errors: every failure prints one message naming what went wrong and exits 1 ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2), noreturn))
#endif
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("abc-synth: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* dir/name, allocated. */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

/* ---- growable byte buffer (JSON headers and index) ---- */

typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) die("formatting failed");
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *bigger = realloc(b->data, cap);
        if (!bigger) die("out of memory");
        b->data = bigger;
        b->cap = cap;
    }
}

/* ---- the value rule (docs/testing.md#synthetic-full-size-checkpoints) ---- */

static uint32_t crc32_of(const char *s) {
    uint32_t crc = 0xFFFFFFFFu;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        crc ^= *p;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint64_t name_seed(const char *name) {
    return ((uint64_t)crc32_of(name) * 2654435761ull) & 0x7FFFFFFFFFFFFFFFull;
}

static uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* float32 -> bf16 bits, round to nearest even on the bit pattern (as torch and the Python writer do;
 * computed in 64 bits so the carry never wraps). */
static uint16_t bf16_bits(float f) {
    uint32_t b32;
    memcpy(&b32, &f, sizeof b32);
    uint64_t b = b32;
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

/* Value i of a stream: base + scale·r in double, r uniform on (−1, 1), then float32, then bf16. */
static uint16_t rule_value(uint64_t seed, double base, double scale, uint64_t i) {
    uint64_t z = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15ull);
    double u = ((double)(z >> 40) + 0.5) / 16777216.0;
    double r = 2.0 * u - 1.0;
    return bf16_bits((float)(base + scale * r));
}

typedef enum { FILL_RULE, FILL_ZERO, FILL_CONST } fill_kind;

typedef struct {
    char *name;        /* key in the safetensors file */
    fill_kind kind;
    uint64_t seed;     /* FILL_RULE: seed(value_name) */
    double base, scale;
    float constant;    /* FILL_CONST */
    int ndim;
    int64_t shape[MAX_DIMS];
    uint64_t numel;
    int outlier_norm;  /* model.layers.1.input_layernorm.weight: elements 3 and H−5 are 25 and −18 */
} tensor_def;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* base and scale by the value name, in the order of the rule's cases. */
static void rule_for(const char *value_name, const int64_t *shape, int ndim, double *base, double *scale) {
    *base = 0.0;
    if ((strstr(value_name, "norm") || strstr(value_name, "ln_q")) && ends_with(value_name, "weight")) {
        *base = 1.0;
        *scale = 0.2 * sqrt(3.0);
    } else if (ends_with(value_name, "bias")) {
        int attn = strstr(value_name, "q_proj") || strstr(value_name, "k_proj") || strstr(value_name, "qkv");
        *scale = (attn ? 0.3 : 0.1) * sqrt(3.0);
    } else if ((strstr(value_name, "embed_tokens") && !strstr(value_name, "vision_embed_tokens")) || strcmp(value_name, "lm_head.weight") == 0) {
        /* the token embedding; Phi-3-V's image tower lives under model.vision_embed_tokens.* and
         * follows the other cases (no Qwen2-VL name contains vision_embed_tokens) */
        *scale = sqrt(3.0);
    } else {
        int64_t fan_in = 1;
        for (int d = 1; d < ndim; d++) fan_in *= shape[d];
        *scale = sqrt(3.0) / sqrt((double)fan_in);
    }
}

static tensor_def make_tensor(const char *name, const char *value_name, fill_kind kind, int ndim, const int64_t *shape) {
    tensor_def t;
    memset(&t, 0, sizeof t);
    t.name = xstrdup(name);
    t.kind = kind;
    t.ndim = ndim;
    t.numel = 1;
    for (int d = 0; d < ndim; d++) {
        t.shape[d] = shape[d];
        t.numel *= (uint64_t)shape[d];
    }
    if (kind == FILL_RULE) {
        t.seed = name_seed(value_name);
        rule_for(value_name, shape, ndim, &t.base, &t.scale);
        t.outlier_norm = ends_with(value_name, "model.layers.1.input_layernorm.weight");
    }
    return t;
}

/* ---- tensor lists ---- */

typedef struct {
    tensor_def *items;
    size_t count, cap;
} tensor_list;

static void list_push(tensor_list *l, tensor_def t) {
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        tensor_def *bigger = realloc(l->items, l->cap * sizeof *bigger);
        if (!bigger) die("out of memory");
        l->items = bigger;
    }
    l->items[l->count++] = t;
}

static void list_free(tensor_list *l) {
    for (size_t i = 0; i < l->count; i++) free(l->items[i].name);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* A tensor whose values follow the rule under its own name. */
static void add_rule(tensor_list *l, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4) {
    int64_t shape[MAX_DIMS] = {d0, d1, d2, d3, d4};
    list_push(l, make_tensor(name, name, FILL_RULE, ndim, shape));
}

typedef struct {
    int64_t hidden, intermediate, layers, heads, kv_heads, vocab;
    int64_t v_embed, v_depth, v_mlp, v_patch, v_temporal, v_merge;
    int tie_embeddings;
    /* phi3_v: fused qkv_proj / gate_up_proj, no biases; CLIP tower (every configured layer is
     * written, as in the hub checkpoint) + HD separators + projection */
    int phi3;
    int qwen25; /* Qwen2.5-VL's ViT names (see model_tensors) */
    int64_t clip_hidden, clip_mlp, clip_layers, clip_image, clip_patch;
} synth_config;

/* The hub layout of Qwen2-VL, in the Python writer's order (it decides which shard a tensor lands in). */
static void model_tensors(const synth_config *c, tensor_list *l) {
    int64_t H = c->hidden, I = c->intermediate, hd = c->hidden / c->heads;
    int64_t q = c->heads * hd, kv = c->kv_heads * hd, E = c->v_embed, VI = c->v_mlp;
    add_rule(l, "model.embed_tokens.weight", 2, c->vocab, H, 0, 0, 0);
    add_rule(l, "model.norm.weight", 1, H, 0, 0, 0, 0);
    if (!c->tie_embeddings) add_rule(l, "lm_head.weight", 2, c->vocab, H, 0, 0, 0);
    char name[256];
    for (int64_t i = 0; i < c->layers; i++) {
#define LAYER(suffix, ...) (snprintf(name, sizeof name, "model.layers.%lld." suffix, (long long)i), add_rule(l, name, __VA_ARGS__))
        LAYER("input_layernorm.weight", 1, H, 0, 0, 0, 0);
        LAYER("post_attention_layernorm.weight", 1, H, 0, 0, 0, 0);
        LAYER("self_attn.q_proj.weight", 2, q, H, 0, 0, 0);
        LAYER("self_attn.q_proj.bias", 1, q, 0, 0, 0, 0);
        LAYER("self_attn.k_proj.weight", 2, kv, H, 0, 0, 0);
        LAYER("self_attn.k_proj.bias", 1, kv, 0, 0, 0, 0);
        LAYER("self_attn.v_proj.weight", 2, kv, H, 0, 0, 0);
        LAYER("self_attn.v_proj.bias", 1, kv, 0, 0, 0, 0);
        LAYER("self_attn.o_proj.weight", 2, H, q, 0, 0, 0);
        LAYER("mlp.gate_proj.weight", 2, I, H, 0, 0, 0);
        LAYER("mlp.up_proj.weight", 2, I, H, 0, 0, 0);
        LAYER("mlp.down_proj.weight", 2, H, I, 0, 0, 0);
#undef LAYER
    }
    add_rule(l, "visual.patch_embed.proj.weight", 5, E, 3, c->v_temporal, c->v_patch, c->v_patch);
    for (int64_t i = 0; i < c->v_depth; i++) {
#define BLOCK(suffix, ...) (snprintf(name, sizeof name, "visual.blocks.%lld." suffix, (long long)i), add_rule(l, name, __VA_ARGS__))
        BLOCK("norm1.weight", 1, E, 0, 0, 0, 0);
        if (!c->qwen25) BLOCK("norm1.bias", 1, E, 0, 0, 0, 0);
        BLOCK("norm2.weight", 1, E, 0, 0, 0, 0);
        if (!c->qwen25) BLOCK("norm2.bias", 1, E, 0, 0, 0, 0);
        BLOCK("attn.qkv.weight", 2, 3 * E, E, 0, 0, 0);
        BLOCK("attn.qkv.bias", 1, 3 * E, 0, 0, 0, 0);
        BLOCK("attn.proj.weight", 2, E, E, 0, 0, 0);
        BLOCK("attn.proj.bias", 1, E, 0, 0, 0, 0);
        if (c->qwen25) { /* Qwen2.5-VL: down(silu(gate)·up), RMSNorm without bias */
            BLOCK("mlp.gate_proj.weight", 2, VI, E, 0, 0, 0);
            BLOCK("mlp.gate_proj.bias", 1, VI, 0, 0, 0, 0);
            BLOCK("mlp.up_proj.weight", 2, VI, E, 0, 0, 0);
            BLOCK("mlp.up_proj.bias", 1, VI, 0, 0, 0, 0);
            BLOCK("mlp.down_proj.weight", 2, E, VI, 0, 0, 0);
            BLOCK("mlp.down_proj.bias", 1, E, 0, 0, 0, 0);
            continue;
        }
        BLOCK("mlp.fc1.weight", 2, VI, E, 0, 0, 0);
        BLOCK("mlp.fc1.bias", 1, VI, 0, 0, 0, 0);
        BLOCK("mlp.fc2.weight", 2, E, VI, 0, 0, 0);
        BLOCK("mlp.fc2.bias", 1, E, 0, 0, 0, 0);
#undef BLOCK
    }
    int64_t M = E * c->v_merge * c->v_merge;
    add_rule(l, "visual.merger.ln_q.weight", 1, E, 0, 0, 0, 0);
    if (!c->qwen25) add_rule(l, "visual.merger.ln_q.bias", 1, E, 0, 0, 0, 0);
    add_rule(l, "visual.merger.mlp.0.weight", 2, M, M, 0, 0, 0);
    add_rule(l, "visual.merger.mlp.0.bias", 1, M, 0, 0, 0, 0);
    add_rule(l, "visual.merger.mlp.2.weight", 2, H, M, 0, 0, 0);
    add_rule(l, "visual.merger.mlp.2.bias", 1, H, 0, 0, 0, 0);
}

/* The hub layout of microsoft/Phi-3.5-vision-instruct (Phi3VForCausalLM), in state_dict order. */
static void phi3_tensors(const synth_config *c, tensor_list *l) {
    const int64_t H = c->hidden, I = c->intermediate, hd = c->hidden / c->heads, kv = c->kv_heads * hd;
    const int64_t C = c->clip_hidden, CI = c->clip_mlp, P = c->clip_patch, grid = c->clip_image / c->clip_patch;
    char name[256];
#define CLIP "model.vision_embed_tokens.img_processor.vision_model."
    add_rule(l, "model.embed_tokens.weight", 2, c->vocab, H, 0, 0, 0);
    add_rule(l, "model.vision_embed_tokens.glb_GN", 3, 1, 1, 4 * C, 0, 0);
    add_rule(l, "model.vision_embed_tokens.sub_GN", 4, 1, 1, 1, 4 * C, 0);
    add_rule(l, CLIP "embeddings.class_embedding", 1, C, 0, 0, 0, 0);
    add_rule(l, CLIP "embeddings.patch_embedding.weight", 4, C, 3, P, P, 0);
    add_rule(l, CLIP "embeddings.position_embedding.weight", 2, grid * grid + 1, C, 0, 0, 0);
    add_rule(l, CLIP "pre_layrnorm.weight", 1, C, 0, 0, 0, 0);
    add_rule(l, CLIP "pre_layrnorm.bias", 1, C, 0, 0, 0, 0);
    for (int64_t i = 0; i < c->clip_layers; i++) {
#define CLAYER(suffix, ...) (snprintf(name, sizeof name, CLIP "encoder.layers.%lld." suffix, (long long)i), add_rule(l, name, __VA_ARGS__))
        CLAYER("self_attn.k_proj.weight", 2, C, C, 0, 0, 0);
        CLAYER("self_attn.k_proj.bias", 1, C, 0, 0, 0, 0);
        CLAYER("self_attn.v_proj.weight", 2, C, C, 0, 0, 0);
        CLAYER("self_attn.v_proj.bias", 1, C, 0, 0, 0, 0);
        CLAYER("self_attn.q_proj.weight", 2, C, C, 0, 0, 0);
        CLAYER("self_attn.q_proj.bias", 1, C, 0, 0, 0, 0);
        CLAYER("self_attn.out_proj.weight", 2, C, C, 0, 0, 0);
        CLAYER("self_attn.out_proj.bias", 1, C, 0, 0, 0, 0);
        CLAYER("layer_norm1.weight", 1, C, 0, 0, 0, 0);
        CLAYER("layer_norm1.bias", 1, C, 0, 0, 0, 0);
        CLAYER("mlp.fc1.weight", 2, CI, C, 0, 0, 0);
        CLAYER("mlp.fc1.bias", 1, CI, 0, 0, 0, 0);
        CLAYER("mlp.fc2.weight", 2, C, CI, 0, 0, 0);
        CLAYER("mlp.fc2.bias", 1, C, 0, 0, 0, 0);
        CLAYER("layer_norm2.weight", 1, C, 0, 0, 0, 0);
        CLAYER("layer_norm2.bias", 1, C, 0, 0, 0, 0);
#undef CLAYER
    }
    add_rule(l, CLIP "post_layernorm.weight", 1, C, 0, 0, 0, 0);
    add_rule(l, CLIP "post_layernorm.bias", 1, C, 0, 0, 0, 0);
#undef CLIP
    add_rule(l, "model.vision_embed_tokens.img_projection.0.weight", 2, H, 4 * C, 0, 0, 0);
    add_rule(l, "model.vision_embed_tokens.img_projection.0.bias", 1, H, 0, 0, 0, 0);
    add_rule(l, "model.vision_embed_tokens.img_projection.2.weight", 2, H, H, 0, 0, 0);
    add_rule(l, "model.vision_embed_tokens.img_projection.2.bias", 1, H, 0, 0, 0, 0);
    for (int64_t i = 0; i < c->layers; i++) {
#define LAYER(suffix, ...) (snprintf(name, sizeof name, "model.layers.%lld." suffix, (long long)i), add_rule(l, name, __VA_ARGS__))
        LAYER("self_attn.o_proj.weight", 2, H, H, 0, 0, 0);
        LAYER("self_attn.qkv_proj.weight", 2, H + 2 * kv, H, 0, 0, 0);
        LAYER("mlp.gate_up_proj.weight", 2, 2 * I, H, 0, 0, 0);
        LAYER("mlp.down_proj.weight", 2, H, I, 0, 0, 0);
        LAYER("input_layernorm.weight", 1, H, 0, 0, 0, 0);
        LAYER("post_attention_layernorm.weight", 1, H, 0, 0, 0, 0);
#undef LAYER
    }
    add_rule(l, "model.norm.weight", 1, H, 0, 0, 0, 0);
    if (!c->tie_embeddings) add_rule(l, "lm_head.weight", 2, c->vocab, H, 0, 0, 0);
}

/* ABC's head adapter (write_head_adapter): values follow the rule under short names of their own. */
static void head_adapter_tensors(const synth_config *c, int64_t head_hidden, tensor_list *l) {
    int64_t H = c->hidden;
    char name[256], value_name[64];
    for (int64_t i = 0; i < c->layers; i++) {
        snprintf(name, sizeof name, "base_model.model.model.layers.%lld.self_attn.q_proj.lora_A.weight", (long long)i);
        snprintf(value_name, sizeof value_name, "lora_A.%lld", (long long)i);
        list_push(l, make_tensor(name, value_name, FILL_RULE, 2, (int64_t[]){1, H}));
        snprintf(name, sizeof name, "base_model.model.model.layers.%lld.self_attn.q_proj.lora_B.weight", (long long)i);
        list_push(l, make_tensor(name, NULL, FILL_ZERO, 2, (int64_t[]){H, 1}));
    }
    static const char *const head[] = {"mlp_head.linear_layer1.weight", "mlp_head.linear_layer1.bias",
                                       "mlp_head.linear_layer2.weight", "mlp_head.linear_layer2.bias"};
    const int64_t shapes[4][2] = {{head_hidden, H}, {head_hidden, 0}, {H, head_hidden}, {H, 0}};
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "base_model.model.%s", head[k]);
        list_push(l, make_tensor(name, head[k], FILL_RULE, shapes[k][1] ? 2 : 1, shapes[k]));
    }
    tensor_def temp = make_tensor("base_model.model.temperature.temp", NULL, FILL_CONST, 0, NULL);
    temp.constant = 0.05f;
    list_push(l, temp);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(((const tensor_def *)a)->name, ((const tensor_def *)b)->name);
}

/* ---- parallel generation ---- */

typedef struct {
    const tensor_def *t;
    uint64_t start;    /* first element index */
    size_t count;
    uint16_t *dst;
} fill_job;

static void *fill_worker(void *arg) {
    const fill_job *job = arg;
    const tensor_def *t = job->t;
    if (t->kind == FILL_RULE) {
        for (size_t k = 0; k < job->count; k++) job->dst[k] = rule_value(t->seed, t->base, t->scale, job->start + k);
    } else {
        uint16_t v = t->kind == FILL_CONST ? bf16_bits(t->constant) : 0;
        for (size_t k = 0; k < job->count; k++) job->dst[k] = v;
    }
    return NULL;
}

/* Fills dst with elements [start, start+count) of t, split over n_threads. */
static void fill_range(const tensor_def *t, uint64_t start, size_t count, uint16_t *dst, int n_threads) {
    if (count < ((size_t)1 << 16)) n_threads = 1;
    fill_job jobs[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    size_t per = (count + (size_t)n_threads - 1) / (size_t)n_threads;
    int started = 0;
    for (int k = 0; k < n_threads; k++) {
        size_t lo = (size_t)k * per, hi = lo + per < count ? lo + per : count;
        if (lo >= hi) break;
        jobs[k] = (fill_job){t, start + lo, hi - lo, dst + lo};
        if (k == 0) continue; /* job 0 runs on this thread */
        if (pthread_create(&tids[k], NULL, fill_worker, &jobs[k]) != 0) {
            fill_worker(&jobs[k]); /* no thread available: do it here */
            tids[k] = pthread_self();
        }
        started = k;
    }
    fill_worker(&jobs[0]);
    for (int k = 1; k <= started; k++)
        if (!pthread_equal(tids[k], pthread_self())) pthread_join(tids[k], NULL);
    if (t->outlier_norm) {
        /* the element indices are relative to the tensor; H − 5 where H is its length */
        uint64_t hot[2] = {3, (uint64_t)t->shape[0] - 5};
        float val[2] = {25.0f, -18.0f};
        for (int k = 0; k < 2; k++)
            if (hot[k] >= start && hot[k] < start + count) dst[hot[k] - start] = bf16_bits(val[k]);
    }
}

/* ---- safetensors writing ---- */

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static void write_all(FILE *f, const void *data, size_t n, const char *path) {
    if (n && fwrite(data, 1, n, f) != n) die("cannot write '%s': %s", path, strerror(errno));
}

/* The header exactly as Python's json.dumps prints it (", " and ": " separators), space-padded to 8. */
static void safetensors_header(const tensor_def *tensors, size_t n, strbuf *h) {
    uint64_t offset = 0;
    sb_printf(h, "{");
    for (size_t i = 0; i < n; i++) {
        const tensor_def *t = &tensors[i];
        sb_printf(h, "\"%s\": {\"dtype\": \"BF16\", \"shape\": [", t->name);
        for (int d = 0; d < t->ndim; d++) sb_printf(h, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        uint64_t nbytes = t->numel * 2;
        sb_printf(h, "], \"data_offsets\": [%llu, %llu]}, ", (unsigned long long)offset, (unsigned long long)(offset + nbytes));
        offset += nbytes;
    }
    sb_printf(h, "\"__metadata__\": {\"format\": \"pt\"}}");
    while (h->len % 8) sb_printf(h, " ");
}

/* Writes one safetensors file with tensors in the given order (already sorted by name); returns the
 * number of data bytes. buf holds CHUNK_VALUES bf16 values. */
static uint64_t write_safetensors(const char *path, const tensor_def *tensors, size_t n, uint16_t *buf, int n_threads) {
    strbuf h = {0};
    safetensors_header(tensors, n, &h);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create '%s': %s", path, strerror(errno));
    unsigned char len_le[8];
    for (int k = 0; k < 8; k++) len_le[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    write_all(f, len_le, 8, path);
    write_all(f, h.data, h.len, path);
    free(h.data);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const tensor_def *t = &tensors[i];
        for (uint64_t start = 0; start < t->numel; start += CHUNK_VALUES) {
            size_t count = t->numel - start < CHUNK_VALUES ? (size_t)(t->numel - start) : CHUNK_VALUES;
            fill_range(t, start, count, buf, n_threads);
            if (!host_is_little_endian()) /* safetensors data is little-endian */
                for (size_t k = 0; k < count; k++) buf[k] = (uint16_t)((buf[k] >> 8) | (buf[k] << 8));
            write_all(f, buf, count * 2, path);
        }
        total += t->numel * 2;
    }
    if (fclose(f) != 0) die("cannot write '%s': %s", path, strerror(errno));
    return total;
}

/* ---- small files ---- */

static void write_text(const char *dir, const char *file, const char *text, size_t len) {
    char *path = path_join(dir, file);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create '%s': %s", path, strerror(errno));
    write_all(f, text, len, path);
    if (fclose(f) != 0) die("cannot write '%s': %s", path, strerror(errno));
    free(path);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    strbuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + got + 1 > b.cap) {
            size_t cap = b.cap ? b.cap : 65536;
            while (cap < b.len + got + 1) cap *= 2;
            char *bigger = realloc(b.data, cap);
            if (!bigger) die("out of memory reading '%s'", path);
            b.data = bigger;
            b.cap = cap;
        }
        memcpy(b.data + b.len, chunk, got);
        b.len += got;
    }
    if (ferror(f)) die("cannot read '%s'", path);
    fclose(f);
    if (!b.data) b.data = xmalloc(1);
    b.data[b.len] = 0;
    *len = b.len;
    return b.data;
}

/* mkdir -p */
static void make_dir(const char *dir) {
    char *path = xstrdup(dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) die("cannot create directory '%s': %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) die("cannot create directory '%s': %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) die("cannot create directory '%s': not a directory", path);
    free(path);
}

/* Qwen2-VL's preprocessor_config.json (what the hub checkpoints ship). */
static const char PREPROCESSOR_CONFIG[] =
    "{\n  \"min_pixels\": 3136,\n  \"max_pixels\": 12845056,\n  \"patch_size\": 14,\n  \"temporal_patch_size\": 2,\n"
    "  \"merge_size\": 2,\n  \"image_mean\": [\n    0.48145466,\n    0.4578275,\n    0.40821073\n  ],\n"
    "  \"image_std\": [\n    0.26862954,\n    0.26130258,\n    0.27577711\n  ],\n"
    "  \"image_processor_type\": \"Qwen2VLImageProcessor\",\n  \"processor_class\": \"Qwen2VLProcessor\"\n}";

/* config.json of a named preset, as Python's json.dump(cfg, indent=2) prints the writer's dict. */
static void preset_config_json(const synth_config *c, int64_t v_out, const int64_t mrope[3], strbuf *j) {
    sb_printf(j,
              "{\n  \"architectures\": [\n    \"Qwen2VLForConditionalGeneration\"\n  ],\n  \"attention_dropout\": 0.0,\n"
              "  \"bos_token_id\": 151643,\n  \"eos_token_id\": 151645,\n  \"vision_start_token_id\": 151652,\n"
              "  \"vision_end_token_id\": 151653,\n  \"vision_token_id\": 151654,\n  \"image_token_id\": 151655,\n"
              "  \"video_token_id\": 151656,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n"
              "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": 32768,\n"
              "  \"max_window_layers\": %lld,\n  \"model_type\": \"qwen2_vl\",\n  \"num_attention_heads\": %lld,\n"
              "  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n  \"rms_norm_eps\": 1e-06,\n"
              "  \"rope_theta\": 1000000.0,\n  \"sliding_window\": 32768,\n  \"tie_word_embeddings\": %s,\n"
              "  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.41.2\",\n  \"use_cache\": true,\n"
              "  \"use_sliding_window\": false,\n  \"vision_config\": {\n    \"depth\": %lld,\n    \"embed_dim\": %lld,\n"
              "    \"mlp_ratio\": %lld,\n    \"num_heads\": 16,\n    \"in_chans\": 3,\n    \"hidden_size\": %lld,\n"
              "    \"patch_size\": %lld,\n    \"spatial_merge_size\": %lld,\n    \"spatial_patch_size\": %lld,\n"
              "    \"temporal_patch_size\": %lld\n  },\n  \"rope_scaling\": {\n    \"type\": \"mrope\",\n"
              "    \"mrope_section\": [\n      %lld,\n      %lld,\n      %lld\n    ]\n  },\n  \"vocab_size\": %lld\n}",
              (long long)c->hidden, (long long)c->intermediate, (long long)c->layers, (long long)c->heads,
              (long long)c->layers, (long long)c->kv_heads, c->tie_embeddings ? "true" : "false",
              (long long)c->v_depth, (long long)c->v_embed, (long long)(c->v_mlp / c->v_embed), (long long)v_out,
              (long long)c->v_patch, (long long)c->v_merge, (long long)c->v_patch, (long long)c->v_temporal,
              (long long)mrope[0], (long long)mrope[1], (long long)mrope[2], (long long)c->vocab);
}

static const synth_config QWEN2VL_2B = {.hidden = 1536, .intermediate = 8960, .layers = 28, .heads = 12, .kv_heads = 2,
                                        .vocab = 151936, .v_embed = 1280, .v_depth = 32, .v_mlp = 5120, .v_patch = 14,
                                        .v_temporal = 2, .v_merge = 2, .tie_embeddings = 1};
static const synth_config QWEN2VL_7B = {.hidden = 3584, .intermediate = 18944, .layers = 28, .heads = 28, .kv_heads = 4,
                                        .vocab = 152064, .v_embed = 1280, .v_depth = 32, .v_mlp = 5120, .v_patch = 14,
                                        .v_temporal = 2, .v_merge = 2, .tie_embeddings = 0};

/* Qwen/Qwen2.5-VL-3B-Instruct's sizes (config.json as published, re-printed with indent=2; the hub
 * cannot be reached from here: written from the published sizes as recalled, not checked against it). */
static const char QWEN25VL_3B_CONFIG[] =
    "{\n  \"architectures\": [\n    \"Qwen2_5_VLForConditionalGeneration\"\n  ],\n  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n  \"eos_token_id\": 151645,\n  \"vision_start_token_id\": 151652,\n"
    "  \"vision_end_token_id\": 151653,\n  \"vision_token_id\": 151654,\n  \"image_token_id\": 151655,\n"
    "  \"video_token_id\": 151656,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n  \"intermediate_size\": 11008,\n  \"max_position_embeddings\": 128000,\n"
    "  \"max_window_layers\": 70,\n  \"model_type\": \"qwen2_5_vl\",\n  \"num_attention_heads\": 16,\n"
    "  \"num_hidden_layers\": 36,\n  \"num_key_value_heads\": 2,\n  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n  \"sliding_window\": 32768,\n  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n  \"use_cache\": true,\n  \"use_sliding_window\": false,\n"
    "  \"vision_config\": {\n    \"depth\": 32,\n    \"hidden_act\": \"silu\",\n    \"hidden_size\": 1280,\n"
    "    \"intermediate_size\": 3420,\n    \"num_heads\": 16,\n    \"in_chans\": 3,\n    \"out_hidden_size\": 2048,\n"
    "    \"patch_size\": 14,\n    \"spatial_merge_size\": 2,\n    \"spatial_patch_size\": 14,\n    \"window_size\": 112,\n"
    "    \"fullatt_block_indexes\": [\n      7,\n      15,\n      23,\n      31\n    ],\n    \"tokens_per_second\": 2,\n"
    "    \"temporal_patch_size\": 2\n  },\n  \"rope_scaling\": {\n    \"type\": \"mrope\",\n"
    "    \"mrope_section\": [\n      16,\n      24,\n      24\n    ]\n  },\n  \"vocab_size\": 151936\n}";

static const synth_config QWEN25VL_3B = {.hidden = 2048, .intermediate = 11008, .layers = 36, .heads = 16, .kv_heads = 2,
                                         .vocab = 151936, .v_embed = 1280, .v_depth = 32, .v_mlp = 3420, .v_patch = 14,
                                         .v_temporal = 2, .v_merge = 2, .tie_embeddings = 1, .qwen25 = 1};

/* microsoft/Phi-3.5-vision-instruct's config.json (the rope factors as published there; copied from
 * the copy of that config in sdpython/experimental-experiment, torch_models/llm_model_helper.py,
 * get_phi_3_5_vision_instruct, as the hub cannot be reached from here), re-printed with indent=2.
 * CLIP is ViT-L/14-336: the config names it, the modeling code hard-codes its sizes. */
static const char PHI35V_CONFIG[] =
    "{\n"
    "  \"architectures\": [\n"
    "    \"Phi3VForCausalLM\"\n"
    "  ],\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 1,\n"
    "  \"embd_layer\": {\n"
    "    \"embedding_cls\": \"image\",\n"
    "    \"hd_transform_order\": \"sub_glb\",\n"
    "    \"projection_cls\": \"mlp\",\n"
    "    \"use_hd_transform\": true,\n"
    "    \"with_learnable_separator\": true\n"
    "  },\n"
    "  \"embd_pdrop\": 0.0,\n"
    "  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 3072,\n"
    "  \"img_processor\": {\n"
    "    \"image_dim_out\": 1024,\n"
    "    \"model_name\": \"openai/clip-vit-large-patch14-336\",\n"
    "    \"name\": \"clip_vision_model\",\n"
    "    \"num_img_tokens\": 144\n"
    "  },\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"model_type\": \"phi3_v\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 32,\n"
    "  \"original_max_position_embeddings\": 4096,\n"
    "  \"pad_token_id\": 32000,\n"
    "  \"resid_pdrop\": 0.0,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"long_factor\": [\n"
    "      1.0800000429153442,\n"
    "      1.1100000143051147,\n"
    "      1.1399999856948853,\n"
    "      1.340000033378601,\n"
    "      1.5899999141693115,\n"
    "      1.600000023841858,\n"
    "      1.6200000047683716,\n"
    "      2.620000123977661,\n"
    "      3.2300000190734863,\n"
    "      3.2300000190734863,\n"
    "      4.789999961853027,\n"
    "      7.400000095367432,\n"
    "      7.700000286102295,\n"
    "      9.09000015258789,\n"
    "      12.199999809265137,\n"
    "      17.670000076293945,\n"
    "      24.46000099182129,\n"
    "      28.57000160217285,\n"
    "      30.420001983642578,\n"
    "      30.840002059936523,\n"
    "      32.590003967285156,\n"
    "      32.93000411987305,\n"
    "      42.320003509521484,\n"
    "      44.96000289916992,\n"
    "      50.340003967285156,\n"
    "      50.45000457763672,\n"
    "      57.55000305175781,\n"
    "      57.93000411987305,\n"
    "      58.21000289916992,\n"
    "      60.1400032043457,\n"
    "      62.61000442504883,\n"
    "      62.62000274658203,\n"
    "      62.71000289916992,\n"
    "      63.1400032043457,\n"
    "      63.1400032043457,\n"
    "      63.77000427246094,\n"
    "      63.93000411987305,\n"
    "      63.96000289916992,\n"
    "      63.970001220703125,\n"
    "      64.02999877929688,\n"
    "      64.06999969482422,\n"
    "      64.08000183105469,\n"
    "      64.12000274658203,\n"
    "      64.41000366210938,\n"
    "      64.4800033569336,\n"
    "      64.51000213623047,\n"
    "      64.52999877929688,\n"
    "      64.83999633789062\n"
    "    ],\n"
    "    \"short_factor\": [\n"
    "      1.08,\n"
    "      1.1,\n"
    "      1.1300000000000001,\n"
    "      1.2800000000000002,\n"
    "      1.3100000000000003,\n"
    "      1.4500000000000004,\n"
    "      1.4500000000000004,\n"
    "      1.9500000000000008,\n"
    "      2.030000000000001,\n"
    "      2.4299999999999926,\n"
    "      2.5699999999999896,\n"
    "      2.9499999999999815,\n"
    "      3.729999999999965,\n"
    "      3.869999999999962,\n"
    "      4.189999999999955,\n"
    "      4.43999999999995,\n"
    "      4.6399999999999455,\n"
    "      4.979999999999938,\n"
    "      5.159999999999934,\n"
    "      5.279999999999932,\n"
    "      5.759999999999922,\n"
    "      5.889999999999919,\n"
    "      5.889999999999919,\n"
    "      5.969999999999917,\n"
    "      6.089999999999915,\n"
    "      6.2799999999999105,\n"
    "      6.7699999999999,\n"
    "      6.8899999999998975,\n"
    "      7.109999999999893,\n"
    "      7.129999999999892,\n"
    "      7.179999999999891,\n"
    "      7.289999999999889,\n"
    "      7.339999999999888,\n"
    "      7.559999999999883,\n"
    "      7.619999999999882,\n"
    "      7.69999999999988,\n"
    "      7.879999999999876,\n"
    "      7.879999999999876,\n"
    "      7.879999999999876,\n"
    "      7.939999999999875,\n"
    "      7.949999999999875,\n"
    "      7.979999999999874,\n"
    "      8.19999999999987,\n"
    "      8.439999999999864,\n"
    "      8.469999999999864,\n"
    "      8.589999999999861,\n"
    "      8.809999999999857,\n"
    "      8.999999999999853\n"
    "    ],\n"
    "    \"type\": \"su\"\n"
    "  },\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"sliding_window\": 262144,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.38.1\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 32064\n"
    "}";

/* Phi3VImageProcessor's preprocessor_config.json as the hub ships it (num_crops 4: VLM2Vec's setting). */
static const char PHI3V_PREPROCESSOR_CONFIG[] =
    "{\n  \"do_convert_rgb\": true,\n  \"image_mean\": [\n    0.48145466,\n    0.4578275,\n    0.40821073\n  ],\n"
    "  \"image_processor_type\": \"Phi3VImageProcessor\",\n  \"image_std\": [\n    0.26862954,\n    0.26130258,\n    0.27577711\n  ],\n"
    "  \"num_crops\": 4,\n  \"num_img_tokens\": 144,\n  \"processor_class\": \"Phi3VProcessor\"\n}";

static const synth_config PHI35V = {.hidden = 3072, .intermediate = 8192, .layers = 32, .heads = 32, .kv_heads = 32, .vocab = 32064,
                                    .tie_embeddings = 0, .phi3 = 1, .clip_hidden = 1024, .clip_mlp = 4096, .clip_layers = 24,
                                    .clip_image = 336, .clip_patch = 14};

/* ---- CONFIG.json: the fields the Python writer reads ---- */

static int64_t json_int_field(const json_value *obj, const char *key, const char *where) {
    const json_value *v = json_get(obj, key);
    if (!v || v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < 1 || v->number > 1e9)
        die("%s: \"%s\" must be a positive integer", where, key);
    return (int64_t)v->number;
}

/* phi3_v: the decoder sizes, and CLIP's from img_processor.tiny_clip_config / clip_config when the
 * config lists them (the test fixtures), ViT-L/14-336's otherwise. */
static void phi3_config_from_json(const json_value *root, const char *path, synth_config *c) {
    memset(c, 0, sizeof *c);
    c->phi3 = 1;
    c->hidden = json_int_field(root, "hidden_size", path);
    c->intermediate = json_int_field(root, "intermediate_size", path);
    c->layers = json_int_field(root, "num_hidden_layers", path);
    c->heads = json_int_field(root, "num_attention_heads", path);
    c->kv_heads = json_get(root, "num_key_value_heads") ? json_int_field(root, "num_key_value_heads", path) : c->heads;
    c->vocab = json_int_field(root, "vocab_size", path);
    const json_value *tie = json_get(root, "tie_word_embeddings");
    c->tie_embeddings = tie && tie->type == JSON_BOOL && tie->boolean;
    if (c->hidden % c->heads) die("%s: hidden_size is not a multiple of num_attention_heads", path);
    const json_value *ip = json_get(root, "img_processor");
    if (!ip || ip->type != JSON_OBJECT) die("%s: no \"img_processor\" object", path);
    const json_value *cc = json_get(ip, "tiny_clip_config");
    if (!cc || cc->type != JSON_OBJECT) cc = json_get(ip, "clip_config");
    c->clip_hidden = PHI35V.clip_hidden;
    c->clip_mlp = PHI35V.clip_mlp;
    c->clip_layers = PHI35V.clip_layers;
    c->clip_image = PHI35V.clip_image;
    c->clip_patch = PHI35V.clip_patch;
    if (cc && cc->type == JSON_OBJECT) {
        c->clip_hidden = json_int_field(cc, "hidden_size", path);
        c->clip_mlp = json_int_field(cc, "intermediate_size", path);
        c->clip_layers = json_int_field(cc, "num_hidden_layers", path);
        if (json_get(cc, "image_size")) c->clip_image = json_int_field(cc, "image_size", path);
        if (json_get(cc, "patch_size")) c->clip_patch = json_int_field(cc, "patch_size", path);
    }
}

static void config_from_json(const char *path, synth_config *c) {
    size_t len;
    char *text = read_file(path, &len);
    char err[256];
    json_value *root = json_parse(text, len, err, sizeof err);
    if (!root) die("%s: %s", path, err);
    if (root->type != JSON_OBJECT) die("%s: not a JSON object", path);
    const json_value *mt = json_get(root, "model_type");
    if (mt && mt->type == JSON_STRING && strcmp(mt->string, "phi3_v") == 0) {
        phi3_config_from_json(root, path, c);
        json_free(root);
        free(text);
        return;
    }
    const json_value *v = json_get(root, "vision_config");
    if (!v || v->type != JSON_OBJECT) die("%s: no \"vision_config\" object", path);
    c->hidden = json_int_field(root, "hidden_size", path);
    c->intermediate = json_int_field(root, "intermediate_size", path);
    c->layers = json_int_field(root, "num_hidden_layers", path);
    c->heads = json_int_field(root, "num_attention_heads", path);
    c->kv_heads = json_int_field(root, "num_key_value_heads", path);
    c->vocab = json_int_field(root, "vocab_size", path);
    c->v_depth = json_int_field(v, "depth", path);
    c->v_patch = json_int_field(v, "patch_size", path);
    c->v_temporal = json_int_field(v, "temporal_patch_size", path);
    c->v_merge = json_int_field(v, "spatial_merge_size", path);
    if (mt && mt->type == JSON_STRING && strcmp(mt->string, "qwen2_5_vl") == 0) {
        /* Qwen2.5-VL names the ViT width hidden_size and gives its MLP width (out_hidden_size is the decoder's) */
        c->qwen25 = 1;
        c->v_embed = json_int_field(v, "hidden_size", path);
        c->v_mlp = json_int_field(v, "intermediate_size", path);
    } else {
        c->v_embed = json_int_field(v, "embed_dim", path);
        const json_value *ratio = json_get(v, "mlp_ratio");
        if (!ratio || ratio->type != JSON_NUMBER || ratio->number <= 0 || ratio->number > 64)
            die("%s: \"vision_config.mlp_ratio\" must be a positive number", path);
        c->v_mlp = (int64_t)((double)c->v_embed * ratio->number); /* Python: int(E * mlp_ratio) */
    }
    const json_value *tie = json_get(root, "tie_word_embeddings");
    c->tie_embeddings = tie && tie->type == JSON_BOOL && tie->boolean;
    if (c->hidden % c->heads) die("%s: hidden_size is not a multiple of num_attention_heads", path);
    json_free(root);
    free(text);
}

/* ---- main ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: abc-synth qwen2vl-2b|qwen2vl-7b|qwen25vl-3b|phi35v|CONFIG.json OUTDIR [--head-adapter DIR] [--tokenizer PATH]\n"
            "                 [--threads N] [--head-hidden N] [--jina DIR] [--colqwen-adapter DIR] [--extras-only]\n"
            "Writes the synthetic Qwen2-VL checkpoint of docs/testing.md (bf16 safetensors shards in the hub\n"
            "layout, byte-identical to the reference Python writer) and, with --head-adapter, ABC's head adapter;\n"
            "phi35v (or a phi3_v CONFIG.json): the same rule over microsoft/Phi-3.5-vision-instruct's tensors;\n"
            "qwen25vl-3b: over Qwen2.5-VL-3B-Instruct's (benchmarks only); with it, --jina DIR writes jina-v4's\n"
            "base (DIR/base: the shards linked, matryoshka_dims, multi_vector_projector) and its three task\n"
            "adapters (DIR/adapters/<task>), --colqwen-adapter DIR ColQwen2.5's adapter (LoRA + custom_text_proj);\n"
            "--extras-only writes only those beside an OUTDIR that already holds the base.\n"
            "The tokenizer is copied from --tokenizer (default " DEFAULT_TOKENIZER ",\n"
            "for phi3_v " DEFAULT_PHI3_TOKENIZER ").\n");
    exit(2);
}

static int parse_count(const char *s, const char *flag, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) die("%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return (int)v;
}

static void write_model(const synth_config *c, const char *outdir, uint16_t *buf, int n_threads) {
    tensor_list all = {0};
    if (c->phi3) phi3_tensors(c, &all);
    else model_tensors(c, &all);
    /* shards: consecutive tensors in writer order until the next one would pass SHARD_BYTES */
    size_t *shard_start = xmalloc((all.count + 1) * sizeof *shard_start);
    size_t n_shards = 0;
    uint64_t size = 0;
    for (size_t i = 0; i < all.count; i++) {
        uint64_t b = all.items[i].numel * 2;
        if (i == 0 || size + b > SHARD_BYTES) {
            shard_start[n_shards++] = i;
            size = 0;
        }
        size += b;
    }
    shard_start[n_shards] = all.count;
    strbuf map = {0};
    uint64_t total = 0;
    for (size_t s = 0; s < n_shards; s++) {
        tensor_def *first = &all.items[shard_start[s]];
        size_t n = shard_start[s + 1] - shard_start[s];
        qsort(first, n, sizeof *first, compare_names);
        char file[64];
        snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
        char *path = path_join(outdir, file);
        double t0 = now_s();
        uint64_t bytes = write_safetensors(path, first, n, buf, n_threads);
        printf("wrote %s %llu bytes of tensors in %.1f s\n", file, (unsigned long long)bytes, now_s() - t0);
        fflush(stdout);
        total += bytes;
        for (size_t i = 0; i < n; i++) sb_printf(&map, "%s  \"%s\": \"%s\"", map.len ? ",\n" : "", first[i].name, file);
        free(path);
    }
    /* json.dump(..., indent=1) */
    strbuf index = {0};
    sb_printf(&index, "{\n \"metadata\": {\n  \"total_size\": %llu\n },\n \"weight_map\": {\n%s\n }\n}",
              (unsigned long long)total, map.data ? map.data : "");
    write_text(outdir, "model.safetensors.index.json", index.data, index.len);
    free(index.data);
    free(map.data);
    free(shard_start);
    list_free(&all);
}

/* adapter_config.json as json.dump(..., indent=2) prints write_head_adapter's dict. */
static const char HEAD_ADAPTER_CONFIG[] =
    "{\n  \"peft_type\": \"LORA\",\n  \"r\": 1,\n  \"lora_alpha\": 2,\n  \"target_modules\": [\n    \"self_attn.q_proj\"\n  ],\n"
    "  \"modules_to_save\": [\n    \"temperature\",\n    \"mlp_head\"\n  ],\n  \"use_dora\": false,\n  \"use_rslora\": false,\n"
    "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"lora_dropout\": 0.0,\n"
    "  \"base_model_name_or_path\": \"Qwen/Qwen2-VL-2B-Instruct\",\n  \"task_type\": null\n}";

static void write_head_adapter(const synth_config *c, int64_t head_hidden, const char *dir, uint16_t *buf, int n_threads) {
    make_dir(dir);
    tensor_list l = {0};
    head_adapter_tensors(c, head_hidden, &l);
    qsort(l.items, l.count, sizeof *l.items, compare_names);
    char *path = path_join(dir, "adapter_model.safetensors");
    write_safetensors(path, l.items, l.count, buf, n_threads);
    free(path);
    write_text(dir, "adapter_config.json", HEAD_ADAPTER_CONFIG, sizeof HEAD_ADAPTER_CONFIG - 1);
    printf("wrote head adapter in %s\n", dir);
    list_free(&l);
}

/* ---- preset extras for the Qwen2.5-VL presets (docs/testing.md, "Preset extras") ---- */

/* lora_B's scale is the fan-in rule's times this, so with lora_A on the fan-in rule and alpha = r each
 * adapted layer's B·A·x is about 5 % of W·x in rms: a perturbation, not a replacement. */
#define LORA_B_REL 0.05
#define EXTRA_RANK 32 /* jina-embeddings-v4's adapters and colqwen2.5-v0.2: r = alpha = 32 */
#define MULTI_DIM 128 /* both projections' width */

/* One LoRA pair on module (its hub name under the PEFT wrapper, e.g. model.language_model.layers.0.mlp.up_proj)
 * of weight [out][in]; values under "<tag>/<key without base_model.model.>". */
static void add_lora(tensor_list *l, const char *tag, const char *module, int64_t out, int64_t in) {
    char key[320], value_name[384];
    snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", module);
    snprintf(value_name, sizeof value_name, "%s/%s.lora_A.weight", tag, module);
    list_push(l, make_tensor(key, value_name, FILL_RULE, 2, (int64_t[]){EXTRA_RANK, in}));
    snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", module);
    snprintf(value_name, sizeof value_name, "%s/%s.lora_B.weight", tag, module);
    tensor_def b = make_tensor(key, value_name, FILL_RULE, 2, (int64_t[]){out, EXTRA_RANK});
    b.scale *= LORA_B_REL;
    list_push(l, b);
}

/* LoRA on every decoder projection and, with vision, on the ViT blocks' gated MLP (jina's target set). */
static void extra_lora_tensors(const synth_config *c, const char *tag, int vision, tensor_list *l) {
    int64_t H = c->hidden, I = c->intermediate, hd = c->hidden / c->heads;
    int64_t q = c->heads * hd, kv = c->kv_heads * hd, E = c->v_embed, VI = c->v_mlp;
    char m[256];
    for (int64_t i = 0; i < c->layers; i++) {
#define LORA(suffix, out, in) (snprintf(m, sizeof m, "model.language_model.layers.%lld." suffix, (long long)i), add_lora(l, tag, m, out, in))
        LORA("self_attn.q_proj", q, H);
        LORA("self_attn.k_proj", kv, H);
        LORA("self_attn.v_proj", kv, H);
        LORA("self_attn.o_proj", H, q);
        LORA("mlp.gate_proj", I, H);
        LORA("mlp.up_proj", I, H);
        LORA("mlp.down_proj", H, I);
#undef LORA
    }
    for (int64_t i = 0; vision && i < c->v_depth; i++) {
#define LORA(suffix, out, in) (snprintf(m, sizeof m, "model.visual.blocks.%lld." suffix, (long long)i), add_lora(l, tag, m, out, in))
        LORA("mlp.gate_proj", VI, E);
        LORA("mlp.up_proj", VI, E);
        LORA("mlp.down_proj", E, VI);
#undef LORA
    }
}

/* adapter_config.json (the fields abc-convert reads, and the target regexes of the released adapters) */
static void write_adapter_config(const char *dir, const char *targets, const char *modules_to_save) {
    strbuf j = {0};
    sb_printf(&j,
              "{\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"lora_alpha\": %d,\n  \"target_modules\": \"%s\",\n"
              "  \"modules_to_save\": %s,\n  \"use_dora\": false,\n  \"use_rslora\": false,\n  \"bias\": \"none\",\n"
              "  \"fan_in_fan_out\": false,\n  \"lora_dropout\": 0.0,\n  \"task_type\": null\n}",
              EXTRA_RANK, EXTRA_RANK, targets, modules_to_save);
    write_text(dir, "adapter_config.json", j.data, j.len);
    free(j.data);
}

static void write_tensor_file(const char *dir, const char *file, tensor_list *l, uint16_t *buf, int n_threads) {
    qsort(l->items, l->count, sizeof *l->items, compare_names);
    char *path = path_join(dir, file);
    write_safetensors(path, l->items, l->count, buf, n_threads);
    free(path);
}

/* Inserts text before the last closing brace of a JSON object text: the last character that is '}'
 * and, for the index, the weight map's own brace before it (depth 1 or 2 from the end). */
static char *insert_before_closing(const char *json, size_t len, int depth, const char *text) {
    size_t at = len;
    for (int d = 0; d < depth; d++) {
        while (at > 0 && json[at - 1] != '}') at--;
        if (at == 0) die("unexpected JSON text (no closing brace)");
        at--;
    }
    while (at > 0 && (json[at - 1] == '\n' || json[at - 1] == ' ')) at--; /* after the last value */
    strbuf b = {0};
    sb_printf(&b, "%.*s%s%s", (int)at, json, text, json + at);
    return b.data;
}

/* jina-embeddings-v4 on the synthetic base: DIR/base (the base's shards linked, config.json with
 * matryoshka_dims, the index and multi_vector_projector.safetensors) and DIR/adapters/<task>/. */
static void write_jina(const synth_config *c, const char *outdir, const char *dir, uint16_t *buf, int n_threads) {
    char *base = path_join(dir, "base");
    make_dir(base);
    static const char *const copies[] = {"config.json", "preprocessor_config.json", "tokenizer.json", "model.safetensors.index.json"};
    for (int k = 0; k < 4; k++) {
        char *from = path_join(outdir, copies[k]);
        size_t len;
        char *text = read_file(from, &len), *out = NULL;
        if (k == 0) {
            strbuf dims = {0};
            sb_printf(&dims, ",\n  \"matryoshka_dims\": [");
            /* hidden/16 .. hidden by powers of two: jina-v4's 128 .. 2048 on the 3B */
            for (int64_t k = 16, last = 0; k >= 1; k /= 2) {
                if (c->hidden / k <= last) continue;
                sb_printf(&dims, "%s\n    %lld", last ? "," : "", (long long)(c->hidden / k));
                last = c->hidden / k;
            }
            sb_printf(&dims, "\n  ]");
            out = insert_before_closing(text, len, 1, dims.data);
            free(dims.data);
        } else if (k == 3) {
            out = insert_before_closing(text, len, 2, ",\n  \"multi_vector_projector.bias\": \"multi_vector_projector.safetensors\""
                                                     ",\n  \"multi_vector_projector.weight\": \"multi_vector_projector.safetensors\"");
        }
        write_text(base, copies[k], out ? out : text, out ? strlen(out) : len);
        free(out);
        free(text);
        free(from);
    }
    /* the shards: links to the base's (absolute, so the directories may move apart) */
    for (int s = 1;; s++) {
        char file[64], *target = NULL;
        int n = 0;
        for (int total = s; total <= 99 && !target; total++) {
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s, total);
            char *p = path_join(outdir, file);
            if (access(p, R_OK) == 0) {
                n = total;
                if (p[0] == '/') target = xstrdup(p);
                else {
                    char cwd[4096];
                    if (!getcwd(cwd, sizeof cwd)) die("cannot read the current directory: %s", strerror(errno));
                    target = path_join(cwd, p);
                }
            }
            free(p);
        }
        if (!target) {
            if (s == 1) die("%s holds no model-00001-of-N.safetensors", outdir);
            break;
        }
        char *link = path_join(base, file);
        if (unlink(link) != 0 && errno != ENOENT) die("cannot replace '%s': %s", link, strerror(errno));
        if (symlink(target, link) != 0) die("cannot link '%s': %s", link, strerror(errno));
        free(link);
        free(target);
        if (s == n) break;
    }
    tensor_list proj = {0};
    add_rule(&proj, "multi_vector_projector.weight", 2, MULTI_DIM, c->hidden, 0, 0, 0);
    add_rule(&proj, "multi_vector_projector.bias", 1, MULTI_DIM, 0, 0, 0, 0);
    write_tensor_file(base, "multi_vector_projector.safetensors", &proj, buf, n_threads);
    list_free(&proj);
    static const char *const tasks[] = {"retrieval", "text-matching", "code"};
    for (int k = 0; k < 3; k++) {
        char sub[64];
        snprintf(sub, sizeof sub, "adapters/%s", tasks[k]);
        char *adir = path_join(dir, sub);
        make_dir(adir);
        tensor_list l = {0};
        extra_lora_tensors(c, tasks[k], 1, &l);
        add_lora(&l, tasks[k], "multi_vector_projector", MULTI_DIM, c->hidden);
        write_tensor_file(adir, "adapter_model.safetensors", &l, buf, n_threads);
        write_adapter_config(adir, "(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(multi_vector_projector).*$)", "null");
        list_free(&l);
        free(adir);
    }
    printf("wrote jina-v4 base and task adapters in %s\n", dir);
    free(base);
}

/* ColQwen2.5's adapter: LoRA on the decoder (colpali-engine's regex) and custom_text_proj in modules_to_save. */
static void write_colqwen_adapter(const synth_config *c, const char *dir, uint16_t *buf, int n_threads) {
    make_dir(dir);
    tensor_list l = {0};
    extra_lora_tensors(c, "colqwen", 0, &l);
    list_push(&l, make_tensor("base_model.model.custom_text_proj.weight", "custom_text_proj.weight", FILL_RULE, 2, (int64_t[]){MULTI_DIM, c->hidden}));
    list_push(&l, make_tensor("base_model.model.custom_text_proj.bias", "custom_text_proj.bias", FILL_RULE, 1, (int64_t[]){MULTI_DIM}));
    write_tensor_file(dir, "adapter_model.safetensors", &l, buf, n_threads);
    write_adapter_config(dir, "(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$)", "[\n    \"custom_text_proj\"\n  ]");
    printf("wrote colqwen2.5 adapter in %s\n", dir);
    list_free(&l);
}

int main(int argc, char **argv) {
    const char *which = NULL, *outdir = NULL, *head_dir = NULL, *tokenizer = NULL, *jina_dir = NULL, *colqwen_dir = NULL;
    int n_threads = default_threads(), extras_only = 0;
    int64_t head_hidden = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--head-adapter") == 0 && has_value) head_dir = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && has_value) tokenizer = argv[++i];
        else if (strcmp(a, "--jina") == 0 && has_value) jina_dir = argv[++i];
        else if (strcmp(a, "--colqwen-adapter") == 0 && has_value) colqwen_dir = argv[++i];
        else if (strcmp(a, "--extras-only") == 0) extras_only = 1;
        else if (strcmp(a, "--threads") == 0 && has_value) n_threads = parse_count(argv[++i], a, 1, MAX_THREADS);
        else if (strcmp(a, "--head-hidden") == 0 && has_value) head_hidden = parse_count(argv[++i], a, 1, 1 << 20);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) usage();
        else if (a[0] == '-' && a[1]) die("unknown option or missing value: '%s' (see --help)", a);
        else if (!which) which = a;
        else if (!outdir) outdir = a;
        else die("unexpected argument '%s' (see --help)", a);
    }
    if (!which || !outdir) usage();

    synth_config c = {0}; /* config_from_json sets only the fields of its architecture (phi3 stays 0 for Qwen2-VL) */
    strbuf config = {0};
    static const int64_t mrope[3] = {16, 24, 24};
    if (strcmp(which, "qwen2vl-2b") == 0 || strcmp(which, "qwen2vl-7b") == 0) {
        c = which[8] == '2' ? QWEN2VL_2B : QWEN2VL_7B;
        preset_config_json(&c, c.hidden, mrope, &config);
    } else if (strcmp(which, "qwen25vl-3b") == 0) {
        c = QWEN25VL_3B;
        config.data = xstrdup(QWEN25VL_3B_CONFIG);
        config.len = strlen(QWEN25VL_3B_CONFIG);
    } else if (strcmp(which, "phi35v") == 0) {
        c = PHI35V;
        config.data = xstrdup(PHI35V_CONFIG);
        config.len = strlen(PHI35V_CONFIG);
    } else {
        config_from_json(which, &c);
        config.data = read_file(which, &config.len);
    }
    if (c.phi3 && head_dir) die("--head-adapter is for the Qwen2-VL (ABC) checkpoints only");
    if ((jina_dir || colqwen_dir) && !c.qwen25) die("--jina and --colqwen-adapter are for Qwen2.5-VL checkpoints (qwen25vl-3b or a qwen2_5_vl CONFIG.json) only");
    if (extras_only && (head_dir || !(jina_dir || colqwen_dir))) die("--extras-only writes --jina / --colqwen-adapter beside an existing base, nothing else");
    if (extras_only && jina_dir) { /* --jina copies the base's files: see that they are there before writing */
        char *index = path_join(outdir, "model.safetensors.index.json");
        if (access(index, R_OK) != 0) die("--extras-only: %s holds no base checkpoint (%s: %s)", outdir, index, strerror(errno));
        free(index);
    }
    if (!tokenizer) tokenizer = c.phi3 ? DEFAULT_PHI3_TOKENIZER : DEFAULT_TOKENIZER;
    /* read the tokenizer before writing gigabytes, so a wrong path fails at once */
    size_t tok_len;
    char *tok = read_file(tokenizer, &tok_len);

    double t0 = now_s();
    uint16_t *buf = xmalloc(CHUNK_VALUES * sizeof *buf);
    if (!extras_only) {
        make_dir(outdir);
        write_model(&c, outdir, buf, n_threads);
        write_text(outdir, "config.json", config.data, config.len);
        if (c.phi3) write_text(outdir, "preprocessor_config.json", PHI3V_PREPROCESSOR_CONFIG, sizeof PHI3V_PREPROCESSOR_CONFIG - 1);
        else write_text(outdir, "preprocessor_config.json", PREPROCESSOR_CONFIG, sizeof PREPROCESSOR_CONFIG - 1);
        write_text(outdir, "tokenizer.json", tok, tok_len);
    }
    if (head_dir) write_head_adapter(&c, head_hidden, head_dir, buf, n_threads);
    if (jina_dir) write_jina(&c, outdir, jina_dir, buf, n_threads);
    if (colqwen_dir) write_colqwen_adapter(&c, colqwen_dir, buf, n_threads);
    printf("done in %.1f s (%d threads)\n", now_s() - t0, n_threads);
    free(buf);
    free(tok);
    free(config.data);
    return 0;
}
