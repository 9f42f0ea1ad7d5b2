/* bench_synth.c — the synthetic Qwen2-VL and Phi-3.5-V models of `abc bench --synth`, built as a .abc
 * file image in memory (model_convert/FORMAT.md), directly in the chosen dtype, so a board needs no
 * download and no disk space. docs/testing.md#abc-bench-synthetic-models states the rule; in short:
 *
 * - every value of tensor NAME is a function of (NAME, element index) only: r = 2u − 1 with u from a
 *   splitmix64 counter stream seeded by the FNV-1a hash of NAME, then base + scale·r, with base/scale
 *   by kind (norm weights 1 ± 0.2√3, biases ±0.1√3 (±0.3√3 for q/k/v), the token embedding ±√3, every
 *   other matrix ±√3/√fan_in: the magnitudes of tools/synth.c's rule, which keeps activations sane
 *   through all layers) — not tools/synth.c's bit pattern, which would cost a bf16 round trip;
 * - q8 matrices are drawn as quants directly: q = round(127·r), block scale = scale/127 (the same
 *   uniform distribution, no quantiser pass);
 * - the tokenizer is a synthetic byte-level BPE: the 256 bytes, 26 merges "space + letter" and 144
 *   merges of two of the 12 most frequent English letters, and Qwen2's special tokens at their real
 *   ids (the padding ids between are empty), so English text costs about two characters per token.
 *
 * No query adapter (rank 0): a query then costs what a candidate does, within the adapter's
 * few percent. Phi-3.5-V (VLM2Vec-Full's base) follows the same rule over abc-convert's phi3_v layout. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include "abc.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* name, hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, vision embed, depth, heads, mlp,
 * ABC head width, mrope sections; phi3_v: 1, CLIP view and patch size */
const bench_synth_size bench_synth_sizes[] = {
    {"qwen2vl-2b", 1536, 8960, 28, 12, 2, 128, 151936, 1280, 32, 16, 5120, 4096, {16, 24, 24}, 0, 0, 0},
    {"qwen2vl-7b", 3584, 18944, 28, 28, 4, 128, 152064, 1280, 32, 16, 5120, 4096, {16, 24, 24}, 0, 0, 0},
    /* microsoft/Phi-3.5-vision-instruct: CLIP ViT-L/14-336 runs 23 of its 24 layers (the features are
     * hidden_states[-2]), which is what abc-convert keeps */
    {"phi35v", 3072, 8192, 32, 32, 32, 96, 32064, 1024, 23, 16, 4096, 0, {0, 0, 0}, 1, 336, 14},
    /* for tests: every code path of the full-size models at a few MB */
    {"tiny", 64, 128, 2, 4, 2, 16, 512, 32, 2, 2, 128, 64, {2, 3, 3}, 0, 0, 0},
    {"tiny-phi3v", 64, 128, 2, 4, 4, 16, 512, 32, 2, 2, 64, 0, {0, 0, 0}, 1, 336, 14},
    {NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {0, 0, 0}, 0, 0, 0},
};

const bench_synth_size *bench_synth_find(const char *name) {
    for (const bench_synth_size *s = bench_synth_sizes; s->name; s++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- growable byte buffer (metadata) ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int oom;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *bigger = realloc(b->data, cap);
        if (!bigger) {
            b->oom = 1;
            return;
        }
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); } /* the format is little-endian, as every target */
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void pad8(bytes *b) {
    static const uint8_t zeros[8] = {0};
    put(b, zeros, (8 - b->len % 8) % 8);
}

static void meta_entry(bytes *b, const char *key, uint32_t type, uint64_t count, const void *payload, size_t n) {
    put_u32(b, (uint32_t)strlen(key));
    put_u32(b, type);
    put_u64(b, count);
    put(b, key, strlen(key));
    pad8(b);
    put(b, payload, n);
    pad8(b);
}

static void meta_str(bytes *b, int *count, const char *key, const char *s) {
    meta_entry(b, key, ABC_FILE_META_STR, strlen(s), s, strlen(s));
    (*count)++;
}
static void meta_i64s(bytes *b, int *count, const char *key, const int64_t *v, size_t n) {
    meta_entry(b, key, ABC_FILE_META_I64, n, v, n * 8);
    (*count)++;
}
static void meta_i64(bytes *b, int *count, const char *key, int64_t v) { meta_i64s(b, count, key, &v, 1); }
static void meta_f64s(bytes *b, int *count, const char *key, const double *v, size_t n) {
    meta_entry(b, key, ABC_FILE_META_F64, n, v, n * 8);
    (*count)++;
}
static void meta_f64(bytes *b, int *count, const char *key, double v) { meta_f64s(b, count, key, &v, 1); }

/* ---- tensors ---- */

typedef struct {
    char name[96];
    uint32_t dtype;
    int ndim;
    int64_t shape[2];
    uint64_t seed;
    double base, scale;
    const void *data; /* fixed contents (tokenizer tensors) instead of the rule */
    uint64_t offset, size;
} synth_tensor;

typedef struct {
    synth_tensor *t;
    size_t n, cap;
    uint32_t matrix_dtype; /* general.dtype */
    int oom;
} tensor_list;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t splitmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* r in (−1, 1) for element i of the stream `seed`. */
static double rule_r(uint64_t seed, uint64_t i) {
    uint64_t z = splitmix(seed + (i + 1) * 0x9E3779B97F4A7C15ull);
    return 2.0 * (((double)(z >> 40) + 0.5) / 16777216.0) - 1.0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static synth_tensor *add_tensor(tensor_list *l, const char *name, int64_t d0, int64_t d1) {
    if (l->oom) return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        synth_tensor *bigger = realloc(l->t, cap * sizeof *bigger);
        if (!bigger) {
            l->oom = 1;
            return NULL;
        }
        l->t = bigger;
        l->cap = cap;
    }
    synth_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 1;
    t->seed = fnv1a(name);
    /* 2-D in the model's dtype, except q8 where `in` is not a multiple of the block (the patch embedding) */
    t->dtype = ABC_FILE_F32;
    if (t->ndim == 2 && (l->matrix_dtype != ABC_FILE_Q8 || d1 % ABC_FILE_Q8_BLOCK == 0)) t->dtype = l->matrix_dtype;
    if ((strstr(name, "norm") || strstr(name, "ln_q")) && ends_with(name, "weight") && t->ndim == 1) {
        t->base = 1.0;
        t->scale = 0.2 * sqrt(3.0);
    } else if (ends_with(name, "bias")) {
        int attn = strstr(name, "q_proj") || strstr(name, "k_proj") || strstr(name, "v_proj") || strstr(name, "qkv");
        t->scale = (attn ? 0.3 : 0.1) * sqrt(3.0);
    } else if (strcmp(name, "model.embed_tokens.weight") == 0) {
        t->scale = sqrt(3.0);
    } else {
        t->scale = sqrt(3.0) / sqrt((double)t->shape[1]);
    }
    return t;
}

static void add_fixed(tensor_list *l, const char *name, uint32_t dtype, int64_t d0, int64_t d1, const void *data) {
    synth_tensor *t = add_tensor(l, name, d0, d1);
    if (!t) return;
    t->dtype = dtype;
    t->data = data;
}

/* weight [out, in] and, when bias, bias [out] */
static void add_linear(tensor_list *l, const char *prefix, int64_t out, int64_t in, int bias) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_tensor(l, name, out, in);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add_tensor(l, name, out, 0);
    }
}

/* The decoder (Qwen2 with q/k/v biases, Phi-3 without, both in abc-convert's separate q/k/v form). */
static void add_decoder_tensors(tensor_list *l, const bench_synth_size *s, int qkv_bias) {
    char p[80];
    const int64_t H = s->hidden, q = s->heads * s->head_dim, kv = s->kv_heads * s->head_dim;
    add_tensor(l, "model.embed_tokens.weight", s->vocab, H);
    add_tensor(l, "model.norm.weight", H, 0);
    for (int64_t i = 0; i < s->layers; i++) {
        snprintf(p, sizeof p, "model.layers.%lld.input_layernorm.weight", (long long)i);
        add_tensor(l, p, H, 0);
        snprintf(p, sizeof p, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
        add_tensor(l, p, H, 0);
        snprintf(p, sizeof p, "model.layers.%lld.self_attn.q_proj", (long long)i);
        add_linear(l, p, q, H, qkv_bias);
        snprintf(p, sizeof p, "model.layers.%lld.self_attn.k_proj", (long long)i);
        add_linear(l, p, kv, H, qkv_bias);
        snprintf(p, sizeof p, "model.layers.%lld.self_attn.v_proj", (long long)i);
        add_linear(l, p, kv, H, qkv_bias);
        snprintf(p, sizeof p, "model.layers.%lld.self_attn.o_proj", (long long)i);
        add_linear(l, p, H, q, 0);
        snprintf(p, sizeof p, "model.layers.%lld.mlp.gate_proj", (long long)i);
        add_linear(l, p, s->intermediate, H, 0);
        snprintf(p, sizeof p, "model.layers.%lld.mlp.up_proj", (long long)i);
        add_linear(l, p, s->intermediate, H, 0);
        snprintf(p, sizeof p, "model.layers.%lld.mlp.down_proj", (long long)i);
        add_linear(l, p, H, s->intermediate, 0);
    }
}

static void add_model_tensors(tensor_list *l, const bench_synth_size *s, int abc_preset) {
    char p[80]; /* the longest name is 50 characters */
    const int64_t E = s->v_embed, H = s->hidden;
    add_tensor(l, "visual.patch_embed.proj.weight", E, 3 * 2 * 14 * 14);
    for (int64_t i = 0; i < s->v_depth; i++) {
        const char *parts[] = {"norm1", "norm2"};
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "visual.blocks.%lld.%s.weight", (long long)i, parts[k]);
            add_tensor(l, p, E, 0);
            snprintf(p, sizeof p, "visual.blocks.%lld.%s.bias", (long long)i, parts[k]);
            add_tensor(l, p, E, 0);
        }
        snprintf(p, sizeof p, "visual.blocks.%lld.attn.qkv", (long long)i);
        add_linear(l, p, 3 * E, E, 1);
        snprintf(p, sizeof p, "visual.blocks.%lld.attn.proj", (long long)i);
        add_linear(l, p, E, E, 1);
        snprintf(p, sizeof p, "visual.blocks.%lld.mlp.fc1", (long long)i);
        add_linear(l, p, s->v_mlp, E, 1);
        snprintf(p, sizeof p, "visual.blocks.%lld.mlp.fc2", (long long)i);
        add_linear(l, p, E, s->v_mlp, 1);
    }
    add_tensor(l, "visual.merger.ln_q.weight", E, 0);
    add_tensor(l, "visual.merger.ln_q.bias", E, 0);
    add_linear(l, "visual.merger.mlp.0", 4 * E, 4 * E, 1);
    add_linear(l, "visual.merger.mlp.2", H, 4 * E, 1);
    add_decoder_tensors(l, s, 1);
    if (abc_preset) {
        add_linear(l, "mlp_head.linear_layer1", s->head_hidden, H, 1);
        add_linear(l, "mlp_head.linear_layer2", H, s->head_hidden, 1);
    }
}

/* phi3_v in abc-convert's layout: CLIP (separate q/k/v with biases), the HD separators and projection,
 * then a Phi-3 decoder (separate q/k/v, no biases). */
static void add_phi3_tensors(tensor_list *l, const bench_synth_size *s) {
    char p[80];
    const int64_t C = s->v_embed, H = s->hidden, grid = s->v_image / s->v_patch;
    add_tensor(l, "clip.embeddings.class_embedding", C, 0);
    add_tensor(l, "clip.embeddings.patch_embedding.weight", C, 3 * s->v_patch * s->v_patch);
    add_tensor(l, "clip.embeddings.position_embedding.weight", grid * grid + 1, C);
    add_tensor(l, "clip.pre_layrnorm.weight", C, 0);
    add_tensor(l, "clip.pre_layrnorm.bias", C, 0);
    for (int64_t i = 0; i < s->v_depth; i++) {
        static const char *const norms[] = {"layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight",
                                            "layer_norm2.bias"};
        static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "clip.layers.%lld.%s", (long long)i, norms[k]);
            add_tensor(l, p, C, 0);
        }
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "clip.layers.%lld.self_attn.%s", (long long)i, attn[k]);
            add_linear(l, p, C, C, 1);
        }
        snprintf(p, sizeof p, "clip.layers.%lld.mlp.fc1", (long long)i);
        add_linear(l, p, s->v_mlp, C, 1);
        snprintf(p, sizeof p, "clip.layers.%lld.mlp.fc2", (long long)i);
        add_linear(l, p, C, s->v_mlp, 1);
    }
    /* the separators are [1, 1, 4C] in the checkpoint: ±√3/√(4C), as tools/synth.c's fan-in rule */
    synth_tensor *t = add_tensor(l, "hd.glb_GN", 4 * C, 0);
    if (t) t->scale = sqrt(3.0) / sqrt(4.0 * (double)C);
    t = add_tensor(l, "hd.sub_GN", 4 * C, 0);
    if (t) t->scale = sqrt(3.0) / sqrt(4.0 * (double)C);
    add_linear(l, "hd.img_projection.0", H, 4 * C, 1);
    add_linear(l, "hd.img_projection.2", H, H, 1);
    add_decoder_tensors(l, s, 0);
}

/* ---- the synthetic tokenizer ---- */

enum { N_SPECIAL = 6 };
static const char *const special_text[N_SPECIAL] = {"<|endoftext|>",    "<|im_start|>",  "<|im_end|>",
                                                    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"};
static const int special_offset[N_SPECIAL] = {0, 1, 2, 9, 10, 12}; /* Qwen2's ids, from 151643 */

typedef struct {
    uint8_t *vocab_bytes;
    int32_t *offsets, *merges, *added_ids, *added_special;
    int64_t n_bytes, n_vocab, n_merges;
    int32_t special_ids[N_SPECIAL];
} synth_tokenizer;

static void tokenizer_free(synth_tokenizer *t) {
    free(t->vocab_bytes);
    free(t->offsets);
    free(t->merges);
    free(t->added_ids);
    free(t->added_special);
}

static int tokenizer_build(synth_tokenizer *t, int64_t vocab) {
    static const char letters[] = "etaoinshrdlucmfwypvbgkqjxz";
    const int32_t first_special = vocab >= 151656 ? 151643 : (int32_t)vocab - 16;
    memset(t, 0, sizeof *t);
    for (int k = 0; k < N_SPECIAL; k++) t->special_ids[k] = first_special + special_offset[k];
    t->n_merges = 26 + 12 * 12;
    t->n_vocab = t->special_ids[N_SPECIAL - 1] + 1;
    const int64_t n_bpe = 256 + t->n_merges;
    size_t total = 256 + 2 * (size_t)t->n_merges;
    for (int k = 0; k < N_SPECIAL; k++) total += strlen(special_text[k]);
    t->vocab_bytes = malloc(total);
    t->offsets = malloc(((size_t)t->n_vocab + 1) * sizeof *t->offsets);
    t->merges = malloc((size_t)t->n_merges * 3 * sizeof *t->merges);
    t->added_ids = malloc(N_SPECIAL * sizeof *t->added_ids);
    t->added_special = malloc(N_SPECIAL * sizeof *t->added_special);
    if (!t->vocab_bytes || !t->offsets || !t->merges || !t->added_ids || !t->added_special) return -1;
    size_t n = 0;
    int64_t id = 0;
    for (; id < 256; id++) {
        t->offsets[id] = (int32_t)n;
        t->vocab_bytes[n++] = (uint8_t)id;
    }
    int64_t m = 0;
    for (int a = 0; a < 26; a++, m++, id++) { /* " x" */
        t->offsets[id] = (int32_t)n;
        t->vocab_bytes[n++] = ' ';
        t->vocab_bytes[n++] = (uint8_t)letters[a];
        t->merges[3 * m] = ' ';
        t->merges[3 * m + 1] = (uint8_t)letters[a];
        t->merges[3 * m + 2] = (int32_t)id;
    }
    for (int a = 0; a < 12; a++)
        for (int b = 0; b < 12; b++, m++, id++) { /* "xy" */
            t->offsets[id] = (int32_t)n;
            t->vocab_bytes[n++] = (uint8_t)letters[a];
            t->vocab_bytes[n++] = (uint8_t)letters[b];
            t->merges[3 * m] = (uint8_t)letters[a];
            t->merges[3 * m + 1] = (uint8_t)letters[b];
            t->merges[3 * m + 2] = (int32_t)id;
        }
    for (; id < t->n_vocab; id++) {
        t->offsets[id] = (int32_t)n;
        for (int k = 0; k < N_SPECIAL; k++)
            if (t->special_ids[k] == id) {
                memcpy(t->vocab_bytes + n, special_text[k], strlen(special_text[k]));
                n += strlen(special_text[k]);
            }
    }
    t->offsets[t->n_vocab] = (int32_t)n;
    t->n_bytes = (int64_t)n;
    for (int k = 0; k < N_SPECIAL; k++) {
        t->added_ids[k] = t->special_ids[k];
        t->added_special[k] = 1;
    }
    (void)n_bpe;
    return 0;
}

/* ---- filling the tensors, in parallel ---- */

#define UNIT_VALUES ((uint64_t)1 << 20)

typedef struct {
    size_t tensor;
    uint64_t begin, end; /* elements, or q8 strips */
} fill_unit;

typedef struct {
    uint8_t *file;
    const synth_tensor *t;
    const fill_unit *units;
    size_t n_units, next;
    pthread_mutex_t lock;
} fill_job;

static void fill_q8_strips(uint8_t *dst, const synth_tensor *t, uint64_t s0, uint64_t s1) {
    const int64_t out = t->shape[0], in = t->shape[1], nb = in / ABC_FILE_Q8_BLOCK;
    const float step = (float)(t->scale / 127.0);
    for (uint64_t s = s0; s < s1; s++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = dst + ((int64_t)s * nb + b) * ABC_FILE_Q8_STRIP_BLOCK_BYTES;
            for (int r = 0; r < ABC_FILE_Q8_STRIP; r++) {
                const int64_t j = (int64_t)s * ABC_FILE_Q8_STRIP + r;
                const float scale = j < out ? step : 0.0f;
                for (int k = 0; k < ABC_FILE_Q8_BLOCK; k++) {
                    int q = j < out ? (int)lrint(127.0 * rule_r(t->seed, (uint64_t)(j * in + b * ABC_FILE_Q8_BLOCK + k))) : 0;
                    blk[(k / 4) * 64 + r * 4 + k % 4] = (uint8_t)(int8_t)q;
                }
                memcpy(blk + 512 + r * 4, &scale, 4);
            }
        }
}

static void fill_unit_run(uint8_t *file, const synth_tensor *t, const fill_unit *u) {
    uint8_t *dst = file + t->offset;
    if (t->data) {
        memcpy(dst, t->data, (size_t)t->size);
        return;
    }
    if (t->dtype == ABC_FILE_Q8) {
        fill_q8_strips(dst, t, u->begin, u->end);
        return;
    }
    for (uint64_t i = u->begin; i < u->end; i++) {
        const float v = (float)(t->base + t->scale * rule_r(t->seed, i));
        uint16_t h = 0;
        if (t->dtype == ABC_FILE_F32) memcpy(dst + 4 * i, &v, 4);
        else {
            if (t->dtype == ABC_FILE_F16) abc_f32_to_f16(v, &h); /* |v| < 2: always finite */
            else abc_f32_to_bf16(v, &h);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

static void *fill_worker(void *arg) {
    fill_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t k = job->next < job->n_units ? job->next++ : job->n_units;
        pthread_mutex_unlock(&job->lock);
        if (k == job->n_units) return NULL;
        fill_unit_run(job->file, &job->t[job->units[k].tensor], &job->units[k]);
    }
}

static uint64_t dtype_bytes(uint32_t dtype) {
    return dtype == ABC_FILE_F16 || dtype == ABC_FILE_BF16 ? 2 : dtype == ABC_FILE_U8 ? 1 : 4;
}

/* The keys both architectures write alike: general.*, the decoder's sizes. */
static void add_general_meta(bytes *m, int *n, const bench_synth_size *s, const char *architecture, const char *preset,
                             const char *dtype, double rms_eps, double rope_theta) {
    char source[64];
    snprintf(source, sizeof source, "abc bench --synth %s", s->name);
    meta_str(m, n, "general.architecture", architecture);
    meta_str(m, n, "general.preset", preset);
    meta_str(m, n, "general.dtype", dtype);
    meta_str(m, n, "general.source", source);
    meta_i64(m, n, "text.hidden_size", s->hidden);
    meta_i64(m, n, "text.intermediate_size", s->intermediate);
    meta_i64(m, n, "text.num_layers", s->layers);
    meta_i64(m, n, "text.num_heads", s->heads);
    meta_i64(m, n, "text.num_kv_heads", s->kv_heads);
    meta_i64(m, n, "text.head_dim", s->head_dim);
    meta_i64(m, n, "text.vocab_size", s->vocab);
    meta_f64(m, n, "text.rms_norm_eps", rms_eps);
    meta_f64(m, n, "text.rope_theta", rope_theta);
}

/* ... and the CLIP normalisation, no query adapter, the synthetic byte-level tokenizer. */
static void add_tail_meta(bytes *m, int *n) {
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, stdev[3] = {0.26862954, 0.26130258, 0.27577711};
    meta_f64s(m, n, "image.mean", mean, 3);
    meta_f64s(m, n, "image.std", stdev, 3);
    meta_i64(m, n, "query_adapter.rank", 0);
    meta_str(m, n, "tokenizer.model", "bpe_byte_level");
    meta_str(m, n, "tokenizer.normalizer", "none");
    meta_str(m, n, "tokenizer.pretokenizer", "qwen2");
}

static void add_metadata(bytes *m, int *n, const bench_synth_size *s, int abc_preset, const char *dtype,
                         const synth_tokenizer *tok) {
#define QWEN_SYSTEM "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
#define QWEN_ASSISTANT "<|im_end|>\n<|im_start|>assistant\n"
#define QWEN_IMAGE "<|vision_start|><|image_pad|><|vision_end|>"
    add_general_meta(m, n, s, "qwen2_vl", abc_preset ? "abc" : "vlm2vec", dtype, 1e-6, 1000000.0);
    meta_i64s(m, n, "text.mrope_section", s->mrope, 3);
    meta_i64(m, n, "vision.depth", s->v_depth);
    meta_i64(m, n, "vision.embed_dim", s->v_embed);
    meta_i64(m, n, "vision.num_heads", s->v_heads);
    meta_i64(m, n, "vision.mlp_dim", s->v_mlp);
    meta_i64(m, n, "vision.patch_size", 14);
    meta_i64(m, n, "vision.temporal_patch_size", 2);
    meta_i64(m, n, "vision.spatial_merge_size", 2);
    meta_i64(m, n, "vision.in_channels", 3);
    meta_i64(m, n, "vision.out_dim", s->hidden);
    meta_f64(m, n, "vision.layer_norm_eps", 1e-6);
    meta_f64(m, n, "vision.rope_theta", 10000.0);
    meta_str(m, n, "model.attention", abc_preset ? "bidirectional" : "causal");
    meta_str(m, n, "model.pooling", abc_preset ? "mean_nonzero" : "last");
    meta_str(m, n, "model.head", abc_preset ? "mlp" : "none");
    meta_i64(m, n, "model.normalize", 1);
    meta_i64(m, n, "model.embedding_dim", s->hidden);
    meta_str(m, n, "model.mrope_rule", "vision_start");
    meta_i64(m, n, "tokens.image_pad", tok->special_ids[5]);
    meta_i64(m, n, "tokens.vision_start", tok->special_ids[3]);
    meta_i64(m, n, "tokens.vision_end", tok->special_ids[4]);
    if (abc_preset) {
        meta_str(m, n, "prompt.image_text", QWEN_SYSTEM QWEN_IMAGE "Instruction: {text}" QWEN_ASSISTANT);
        meta_str(m, n, "prompt.image", QWEN_SYSTEM QWEN_IMAGE QWEN_ASSISTANT);
        meta_str(m, n, "prompt.text", QWEN_SYSTEM "{text}" QWEN_ASSISTANT);
        meta_i64(m, n, "image.stage1_min_pixels", 3136);
        meta_i64(m, n, "image.stage1_max_pixels", 12845056);
        meta_i64(m, n, "image.min_pixels", 200704);
        meta_i64(m, n, "image.max_pixels", 802816);
    } else {
        meta_str(m, n, "prompt.image_text", "<|image_pad|> {text}");
        meta_str(m, n, "prompt.image", "<|image_pad|>");
        meta_str(m, n, "prompt.text", "{text}");
        meta_i64(m, n, "image.min_pixels", 3136);
        meta_i64(m, n, "image.max_pixels", 12845056);
    }
    meta_str(m, n, "prompt.image_placeholder", "<|image_pad|>");
    meta_i64(m, n, "image.factor", 28);
    add_tail_meta(m, n);
#undef QWEN_SYSTEM
#undef QWEN_ASSISTANT
#undef QWEN_IMAGE
}

/* phi3_v as abc-convert writes a VLM2Vec-Full (Phi-3.5-V) file, less the su rope factors: they change
 * the rotary frequencies only, not the work. The byte-level tokenizer stands in for Llama's
 * SentencePiece vocabulary (<s> is id 1, as in Phi-3's); the processor splits the prompt on
 * <|image_1|> before tokenizing, so the vocabulary needs no image token. */
static void add_phi3_metadata(bytes *m, int *n, const bench_synth_size *s, const char *dtype) {
    const int64_t grid = s->v_image / s->v_patch;
    add_general_meta(m, n, s, "phi3_v", "vlm2vec-phi3v", dtype, 1e-5, 10000.0);
    meta_i64(m, n, "clip.hidden_size", s->v_embed);
    meta_i64(m, n, "clip.intermediate_size", s->v_mlp);
    meta_i64(m, n, "clip.num_heads", s->v_heads);
    meta_i64(m, n, "clip.num_layers", s->v_depth);
    meta_i64(m, n, "clip.image_size", s->v_image);
    meta_i64(m, n, "clip.patch_size", s->v_patch);
    meta_f64(m, n, "clip.layer_norm_eps", 1e-5);
    meta_i64(m, n, "hd.num_crops", 4); /* VLM2Vec's setting; --num-crops overrides it */
    meta_i64(m, n, "hd.num_img_tokens", (grid / 2) * (grid / 2));
    meta_i64(m, n, "tokens.bos", 1);
    meta_str(m, n, "prompt.image_placeholder", "<|image_1|>");
    meta_str(m, n, "prompt.image_text", "<|image_1|> {text}");
    meta_str(m, n, "prompt.image", "<|image_1|>");
    meta_str(m, n, "prompt.text", "{text}");
    meta_str(m, n, "model.attention", "causal");
    meta_str(m, n, "model.pooling", "last");
    meta_str(m, n, "model.head", "none");
    meta_i64(m, n, "model.normalize", 1);
    meta_i64(m, n, "model.embedding_dim", s->hidden);
    add_tail_meta(m, n);
}

int bench_synth_build(const bench_synth_size *s, const char *preset, const char *dtype, int threads, void **data,
                      size_t *size, char *err, size_t errlen) {
    *data = NULL;
    *size = 0;
    const int abc_preset = strcmp(preset, "abc") == 0;
    if (s->phi3 && strcmp(preset, "vlm2vec-phi3v") != 0)
        return fail(err, errlen, "--synth %s has preset vlm2vec-phi3v, not '%s'", s->name, preset);
    if (!s->phi3 && !abc_preset && strcmp(preset, "vlm2vec") != 0)
        return fail(err, errlen, "--synth models have preset abc or vlm2vec, not '%s'", preset);
    tensor_list l = {0};
    if (strcmp(dtype, "f32") == 0) l.matrix_dtype = ABC_FILE_F32;
    else if (strcmp(dtype, "f16") == 0) l.matrix_dtype = ABC_FILE_F16;
    else if (strcmp(dtype, "bf16") == 0) l.matrix_dtype = ABC_FILE_BF16;
    else if (strcmp(dtype, "q8") == 0) l.matrix_dtype = ABC_FILE_Q8;
    else return fail(err, errlen, "--dtype must be f32, f16, bf16 or q8, not '%s'", dtype);

    synth_tokenizer tok;
    bytes meta = {0}, dir = {0};
    fill_unit *units = NULL;
    uint8_t *file = NULL;
    int rc = -1, n_meta = 0;
    if (tokenizer_build(&tok, s->vocab) < 0) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    if (s->phi3) add_phi3_tensors(&l, s);
    else add_model_tensors(&l, s, abc_preset);
    add_fixed(&l, "tokenizer.vocab.bytes", ABC_FILE_U8, tok.n_bytes, 0, tok.vocab_bytes);
    add_fixed(&l, "tokenizer.vocab.offsets", ABC_FILE_I32, tok.n_vocab + 1, 0, tok.offsets);
    add_fixed(&l, "tokenizer.merges", ABC_FILE_I32, tok.n_merges, 3, tok.merges);
    add_fixed(&l, "tokenizer.added.ids", ABC_FILE_I32, N_SPECIAL, 0, tok.added_ids);
    add_fixed(&l, "tokenizer.added.special", ABC_FILE_I32, N_SPECIAL, 0, tok.added_special);
    if (s->phi3) add_phi3_metadata(&meta, &n_meta, s, dtype);
    else add_metadata(&meta, &n_meta, s, abc_preset, dtype, &tok);
    if (l.oom || meta.oom) {
        fail(err, errlen, "out of memory");
        goto done;
    }

    /* sizes; the directory's length does not depend on the offsets, so lay it out twice */
    size_t n_units = 0;
    for (size_t i = 0; i < l.n; i++) {
        synth_tensor *t = &l.t[i];
        const uint64_t numel = (uint64_t)t->shape[0] * (uint64_t)t->shape[1];
        if (t->dtype == ABC_FILE_Q8) {
            const uint64_t strips = ((uint64_t)t->shape[0] + ABC_FILE_Q8_STRIP - 1) / ABC_FILE_Q8_STRIP;
            t->size = strips * (uint64_t)(t->shape[1] / ABC_FILE_Q8_BLOCK) * ABC_FILE_Q8_STRIP_BLOCK_BYTES;
            const uint64_t per_unit = UNIT_VALUES / ((uint64_t)t->shape[1] * ABC_FILE_Q8_STRIP) + 1;
            n_units += (size_t)((strips + per_unit - 1) / per_unit);
        } else {
            t->size = numel * dtype_bytes(t->dtype);
            n_units += t->data ? 1 : (size_t)((numel + UNIT_VALUES - 1) / UNIT_VALUES);
        }
    }
    const uint64_t dir_offset = ABC_FILE_HEADER_SIZE + meta.len;
    uint64_t dir_len = 0;
    for (size_t i = 0; i < l.n; i++) dir_len += 64 + (strlen(l.t[i].name) + 7) / 8 * 8;
    uint64_t end = dir_offset + dir_len;
    for (size_t i = 0; i < l.n; i++) {
        end = (end + ABC_FILE_TENSOR_ALIGN - 1) / ABC_FILE_TENSOR_ALIGN * ABC_FILE_TENSOR_ALIGN;
        l.t[i].offset = end;
        end += l.t[i].size;
    }
    for (size_t i = 0; i < l.n; i++) {
        const synth_tensor *t = &l.t[i];
        put_u32(&dir, (uint32_t)strlen(t->name));
        put_u32(&dir, t->dtype);
        put_u32(&dir, (uint32_t)t->ndim);
        put_u32(&dir, 0);
        put_u64(&dir, (uint64_t)t->shape[0]);
        put_u64(&dir, t->ndim == 2 ? (uint64_t)t->shape[1] : 1);
        put_u64(&dir, 1);
        put_u64(&dir, 1);
        put_u64(&dir, t->offset);
        put_u64(&dir, t->size);
        put(&dir, t->name, strlen(t->name));
        pad8(&dir);
    }
    if (dir.oom || dir.len != dir_len) {
        fail(err, errlen, dir.oom ? "out of memory" : "internal error: tensor directory size");
        goto done;
    }
    if (end > (uint64_t)SIZE_MAX - ABC_FILE_TENSOR_ALIGN) {
        fail(err, errlen, "the %s model (%llu bytes) does not fit this machine's address space", s->name,
             (unsigned long long)end);
        goto done;
    }
    const size_t alloc = (size_t)((end + ABC_FILE_TENSOR_ALIGN - 1) / ABC_FILE_TENSOR_ALIGN * ABC_FILE_TENSOR_ALIGN);
    void *p = NULL;
    if (posix_memalign(&p, ABC_FILE_TENSOR_ALIGN, alloc) != 0) {
        fail(err, errlen, "out of memory: the %s %s model needs %.2f GB", s->name, dtype, (double)end / 1e9);
        goto done;
    }
    file = p;

    uint8_t header[ABC_FILE_HEADER_SIZE];
    const uint32_t version = ABC_FILE_VERSION, header_size = ABC_FILE_HEADER_SIZE, n_tensors = (uint32_t)l.n;
    const uint64_t meta_offset = ABC_FILE_HEADER_SIZE, meta_size = meta.len, file_size = end;
    const uint32_t n_meta32 = (uint32_t)n_meta;
    memcpy(header, ABC_FILE_MAGIC, 8);
    memcpy(header + 8, &version, 4);
    memcpy(header + 12, &header_size, 4);
    memcpy(header + 16, &file_size, 8);
    memcpy(header + 24, &meta_offset, 8);
    memcpy(header + 32, &meta_size, 8);
    memcpy(header + 40, &dir_offset, 8);
    memcpy(header + 48, &dir_len, 8);
    memcpy(header + 56, &n_meta32, 4);
    memcpy(header + 60, &n_tensors, 4);
    memcpy(file, header, sizeof header);
    memcpy(file + meta_offset, meta.data, meta.len);
    memcpy(file + dir_offset, dir.data, dir.len);
    /* the alignment gaps are zeros, as a converter writes them */
    uint64_t prev = dir_offset + dir_len;
    for (size_t i = 0; i < l.n; i++) {
        memset(file + prev, 0, (size_t)(l.t[i].offset - prev));
        prev = l.t[i].offset + l.t[i].size;
    }
    memset(file + prev, 0, alloc - (size_t)prev);

    units = malloc((n_units ? n_units : 1) * sizeof *units);
    if (!units) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < l.n; i++) {
        const synth_tensor *t = &l.t[i];
        uint64_t count = (uint64_t)t->shape[0] * (uint64_t)t->shape[1], per = UNIT_VALUES;
        if (t->data) per = count;
        else if (t->dtype == ABC_FILE_Q8) {
            count = ((uint64_t)t->shape[0] + ABC_FILE_Q8_STRIP - 1) / ABC_FILE_Q8_STRIP;
            per = UNIT_VALUES / ((uint64_t)t->shape[1] * ABC_FILE_Q8_STRIP) + 1;
        }
        for (uint64_t b = 0; b < count; b += per) units[k++] = (fill_unit){i, b, b + per < count ? b + per : count};
    }
    fill_job job = {.file = file, .t = l.t, .units = units, .n_units = k, .next = 0};
    pthread_mutex_init(&job.lock, NULL);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, fill_worker, &job) != 0) break;
        started++;
    }
    fill_worker(&job);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&job.lock);

    *data = file;
    *size = (size_t)end;
    file = NULL;
    rc = 0;
done:
    free(file);
    free(units);
    free(meta.data);
    free(dir.data);
    free(l.t);
    tokenizer_free(&tok);
    return rc;
}
