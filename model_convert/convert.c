/* The conversion itself: decide, from config.json, every tensor the runtime needs and its shape;
 * find each one in the checkpoint (either layout) or in an adapter's modules_to_save; queue it in
 * the writer with a fill callback that reads, merges and narrows a range of its rows while the file
 * is written (by several threads, writer.c); then add the metadata and the tokenizer. */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"
#include "tokenizer.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NAME 192

typedef struct {
    char name[MAX_NAME];   /* name in the .abc file (qwen2_vl: the hub name) */
    int ndim;
    int64_t shape[4];
    /* phi3_v renames, splits and reshapes checkpoint tensors: */
    char hub[MAX_NAME];    /* the checkpoint's name when it differs from name; "" = name */
    int src_ndim;          /* the checkpoint's shape when it differs (fused, conv, [1,1,N]); 0 = shape */
    int64_t src_shape[4];
    int64_t row0;          /* split: the first row of the fused checkpoint tensor that lands here */
} expected_tensor;

typedef struct {
    expected_tensor *items;
    size_t n, cap;
} expected_list;

typedef struct cv_family cv_family;

#define CV_MAX_TASKS 7 /* task adapter slots of a file (the runtime's MODEL_MAX_ADAPTERS - 1) */

typedef struct {
    const convert_options *opt;
    const cv_family *family; /* the checkpoint's entry of families[] */
    model_config cfg;
    st_set base;
    peft_adapter *merges;
    size_t n_merges;
    peft_adapter query;
    int has_query;
    peft_adapter *tasks;   /* --task-adapter NAME=DIR, in order; or --task-adapters DIR's tasks */
    char **task_names;
    size_t n_tasks;
    expected_list exp;
    int64_t head_dim;      /* mlp_head inner width D; 0 without a head */
    int64_t multi_dim;     /* the per-token projection's width; 0 without a multi-vector output */
    const char *multi_hub; /* the projection's checkpoint module (its .weight/.bias) */
} conv_state;

/* Where one output tensor comes from: a checkpoint or adapter tensor, then LoRA/DoRA merges. */
typedef struct {
    const st_set *set;
    const st_tensor *src;
    size_t n_merges;
    const peft_adapter **merge_adapters;
    const lora_module **merge_modules;
} tensor_source;

typedef struct {
    expected_tensor exp;   /* a copy: the list it came from may grow (and move) later */
    tensor_source source;
    uint32_t dtype;
    float post_scale;      /* query adapter lora_B: the LoRA scale folded in; 1 otherwise */
} fill_ctx;

/* What differs between the model families the converter knows: one entry each in families[] (and
 * one in config.c's config_families[], which reads their config.json). */
struct cv_family {
    model_arch arch;
    const char *presets[8];  /* the --preset values of this family, NULL-terminated */
    const char *wrong_preset; /* the error for another family's preset; %s: the checkpoint directory */
    int query_adapter, task_adapters, num_crops; /* --query-adapter / --task-adapter / --num-crops supported */
    char *(*canonical_name)(const char *name); /* checkpoint names -> the hub spelling (a new string) */
    int (*canonical_adapter)(peft_adapter *a, char *err, size_t errsize); /* adapters' names likewise; NULL: as they are */
    int (*prepare)(conv_state *s, const char *tokenizer_path, char *err, size_t errsize); /* NULL: nothing to do */
    int (*expected)(const conv_state *s, expected_list *l); /* every output tensor, in file order */
    int (*dropped)(const model_config *c, const char *hub); /* checkpoint tensors left out on purpose; NULL: none */
    const char *drop_note;   /* said once when one is dropped */
    const char *prefixes[3]; /* a checkpoint tensor under these that no output uses is an error */
    const char *embed_alias; /* another name model.embed_tokens.weight may be saved under; NULL: none */
    int (*metadata)(const conv_state *s, abc_writer *w, char *err, size_t errsize);
};

/* ---- expected tensors ---- */

static int expect(expected_list *l, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int expect(expected_list *l, int ndim, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        expected_tensor *n = realloc(l->items, cap * sizeof *n);
        if (!n) return -1;
        l->items = n;
        l->cap = cap;
    }
    expected_tensor *e = &l->items[l->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim == 2 ? d1 : 1;
    e->shape[2] = e->shape[3] = 1;
    return 0;
}

/* Every tensor of FORMAT.md for this config (qwen2_vl or qwen2_5_vl), in file order. */
static int expect_renamed(expected_list *l, const char *out_prefix, const char *hub_prefix, const char *suffix, int ndim, int64_t d0, int64_t d1);

static int build_expected_qwen2vl(const conv_state *s, expected_list *l) {
    const model_config *c = &s->cfg;
    const int64_t head_dim = s->head_dim;
    const int64_t E = c->v_embed, M = c->v_mlp, H = c->hidden, I = c->intermediate;
    const int64_t patch_len = c->v_in_channels * c->v_temporal_patch * c->v_patch * c->v_patch;
    const int64_t merged = E * c->v_merge * c->v_merge;
    const int64_t kv = c->kv_heads * c->head_dim;
    /* qwen2_5_vl: RMSNorm weights only (no biases), a gated MLP with biases, ln_q without bias */
    const int q25 = c->arch == ARCH_QWEN2_5_VL;
    int rc = expect(l, 2, E, patch_len, "visual.patch_embed.proj.weight");
    for (int64_t b = 0; b < c->v_depth && rc == 0; b++) {
        const char *p = "visual.blocks";
        long long i = (long long)b;
        rc |= expect(l, 1, E, 0, "%s.%lld.norm1.weight", p, i);
        if (!q25) rc |= expect(l, 1, E, 0, "%s.%lld.norm1.bias", p, i);
        rc |= expect(l, 1, E, 0, "%s.%lld.norm2.weight", p, i);
        if (!q25) rc |= expect(l, 1, E, 0, "%s.%lld.norm2.bias", p, i);
        rc |= expect(l, 2, 3 * E, E, "%s.%lld.attn.qkv.weight", p, i);
        rc |= expect(l, 1, 3 * E, 0, "%s.%lld.attn.qkv.bias", p, i);
        rc |= expect(l, 2, E, E, "%s.%lld.attn.proj.weight", p, i);
        rc |= expect(l, 1, E, 0, "%s.%lld.attn.proj.bias", p, i);
        rc |= expect(l, 2, M, E, "%s.%lld.mlp.%s.weight", p, i, q25 ? "gate_proj" : "fc1");
        rc |= expect(l, 1, M, 0, "%s.%lld.mlp.%s.bias", p, i, q25 ? "gate_proj" : "fc1");
        if (q25) rc |= expect(l, 2, M, E, "%s.%lld.mlp.up_proj.weight", p, i);
        if (q25) rc |= expect(l, 1, M, 0, "%s.%lld.mlp.up_proj.bias", p, i);
        rc |= expect(l, 2, E, M, "%s.%lld.mlp.%s.weight", p, i, q25 ? "down_proj" : "fc2");
        rc |= expect(l, 1, E, 0, "%s.%lld.mlp.%s.bias", p, i, q25 ? "down_proj" : "fc2");
    }
    rc |= expect(l, 1, E, 0, "visual.merger.ln_q.weight");
    if (!q25) rc |= expect(l, 1, E, 0, "visual.merger.ln_q.bias");
    rc |= expect(l, 2, merged, merged, "visual.merger.mlp.0.weight");
    rc |= expect(l, 1, merged, 0, "visual.merger.mlp.0.bias");
    rc |= expect(l, 2, c->v_out, merged, "visual.merger.mlp.2.weight");
    rc |= expect(l, 1, c->v_out, 0, "visual.merger.mlp.2.bias");
    rc |= expect(l, 2, c->vocab, H, "model.embed_tokens.weight");
    for (int64_t b = 0; b < c->layers && rc == 0; b++) {
        const char *p = "model.layers";
        long long i = (long long)b;
        rc |= expect(l, 1, H, 0, "%s.%lld.input_layernorm.weight", p, i);
        rc |= expect(l, 1, H, 0, "%s.%lld.post_attention_layernorm.weight", p, i);
        rc |= expect(l, 2, H, H, "%s.%lld.self_attn.q_proj.weight", p, i);
        rc |= expect(l, 1, H, 0, "%s.%lld.self_attn.q_proj.bias", p, i);
        rc |= expect(l, 2, kv, H, "%s.%lld.self_attn.k_proj.weight", p, i);
        rc |= expect(l, 1, kv, 0, "%s.%lld.self_attn.k_proj.bias", p, i);
        rc |= expect(l, 2, kv, H, "%s.%lld.self_attn.v_proj.weight", p, i);
        rc |= expect(l, 1, kv, 0, "%s.%lld.self_attn.v_proj.bias", p, i);
        rc |= expect(l, 2, H, H, "%s.%lld.self_attn.o_proj.weight", p, i);
        rc |= expect(l, 2, I, H, "%s.%lld.mlp.gate_proj.weight", p, i);
        rc |= expect(l, 2, I, H, "%s.%lld.mlp.up_proj.weight", p, i);
        rc |= expect(l, 2, H, I, "%s.%lld.mlp.down_proj.weight", p, i);
    }
    rc |= expect(l, 1, H, 0, "model.norm.weight");
    if (s->multi_dim > 0) {
        rc |= expect_renamed(l, "multi_vector.proj.", s->multi_hub, "weight", 2, s->multi_dim, H);
        rc |= expect_renamed(l, "multi_vector.proj.", s->multi_hub, "bias", 1, s->multi_dim, 0);
    }
    if (head_dim > 0) {
        rc |= expect(l, 2, head_dim, H, "mlp_head.linear_layer1.weight");
        rc |= expect(l, 1, head_dim, 0, "mlp_head.linear_layer1.bias");
        rc |= expect(l, 2, H, head_dim, "mlp_head.linear_layer2.weight");
        rc |= expect(l, 1, H, 0, "mlp_head.linear_layer2.bias");
    }
    return rc ? -1 : 0;
}

/* ---- phi3_v: the .abc names of FORMAT.md, made from the hub checkpoint's tensors ---- */

#define PHI3_VISION "model.vision_embed_tokens."
#define PHI3_CLIP PHI3_VISION "img_processor.vision_model."

/* One output tensor `name` [d0(, d1)] made from checkpoint tensor `hub` (src_ndim 0: same shape;
 * else the checkpoint's shape, of which rows row0.. are taken when it is a fused matrix). */
static int expect_from(expected_list *l, const char *name, int ndim, int64_t d0, int64_t d1, const char *hub, int src_ndim,
                       const int64_t *src_shape, int64_t row0) {
    if (expect(l, ndim, d0, d1, "%s", name) < 0) return -1;
    expected_tensor *e = &l->items[l->n - 1];
    if (strcmp(hub, name) != 0) snprintf(e->hub, sizeof e->hub, "%s", hub);
    e->src_ndim = src_ndim;
    for (int i = 0; i < src_ndim; i++) e->src_shape[i] = src_shape[i];
    e->row0 = row0;
    return 0;
}

/* Same shape, new name: out_prefix + suffix, from hub_prefix + suffix. */
static int expect_renamed(expected_list *l, const char *out_prefix, const char *hub_prefix, const char *suffix, int ndim, int64_t d0, int64_t d1) {
    char name[MAX_NAME], hub[MAX_NAME];
    snprintf(name, sizeof name, "%s%s", out_prefix, suffix);
    snprintf(hub, sizeof hub, "%s%s", hub_prefix, suffix);
    return expect_from(l, name, ndim, d0, d1, hub, 0, NULL, 0);
}

/* Rows [row0, row0 + rows) of the fused [total, in] checkpoint matrix `hub`. */
static int expect_split(expected_list *l, const char *name, const char *hub, int64_t row0, int64_t rows, int64_t total, int64_t in) {
    const int64_t src[2] = { total, in };
    return expect_from(l, name, 2, rows, in, hub, 2, src, row0);
}

static int build_expected_phi3(const conv_state *s, expected_list *l) {
    const model_config *c = &s->cfg;
    const int64_t C = c->clip_hidden, CI = c->clip_intermediate, H = c->hidden, I = c->intermediate;
    const int64_t kv = c->kv_heads * c->head_dim, patch_len = 3 * c->clip_patch * c->clip_patch;
    const int64_t positions = (c->clip_image / c->clip_patch) * (c->clip_image / c->clip_patch) + 1;
    const int64_t conv[4] = { C, 3, c->clip_patch, c->clip_patch }, glb[3] = { 1, 1, 4 * C }, sub[4] = { 1, 1, 1, 4 * C };
    int rc = 0;
    rc |= expect_renamed(l, "clip.", PHI3_CLIP, "embeddings.class_embedding", 1, C, 0);
    /* the Conv2d kernel [C, 3, P, P] flattened per output channel in (channel, ky, kx) order */
    rc |= expect_from(l, "clip.embeddings.patch_embedding.weight", 2, C, patch_len, PHI3_CLIP "embeddings.patch_embedding.weight", 4, conv, 0);
    rc |= expect_renamed(l, "clip.", PHI3_CLIP, "embeddings.position_embedding.weight", 2, positions, C);
    rc |= expect_renamed(l, "clip.", PHI3_CLIP, "pre_layrnorm.weight", 1, C, 0);
    rc |= expect_renamed(l, "clip.", PHI3_CLIP, "pre_layrnorm.bias", 1, C, 0);
    /* the features are hidden_states[-2]: the last layer (and post_layernorm) never runs */
    for (int64_t b = 0; b + 1 < c->clip_layers && rc == 0; b++) {
        char out[MAX_NAME], hub[MAX_NAME];
        snprintf(out, sizeof out, "clip.layers.%lld.", (long long)b);
        snprintf(hub, sizeof hub, PHI3_CLIP "encoder.layers.%lld.", (long long)b);
        static const char *const norms[] = { "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias" };
        for (int k = 0; k < 4; k++) rc |= expect_renamed(l, out, hub, norms[k], 1, C, 0);
        static const char *const attn[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj" };
        for (int k = 0; k < 4; k++) {
            char w[64], bias[64];
            snprintf(w, sizeof w, "%s.weight", attn[k]);
            snprintf(bias, sizeof bias, "%s.bias", attn[k]);
            rc |= expect_renamed(l, out, hub, w, 2, C, C);
            rc |= expect_renamed(l, out, hub, bias, 1, C, 0);
        }
        rc |= expect_renamed(l, out, hub, "mlp.fc1.weight", 2, CI, C);
        rc |= expect_renamed(l, out, hub, "mlp.fc1.bias", 1, CI, 0);
        rc |= expect_renamed(l, out, hub, "mlp.fc2.weight", 2, C, CI);
        rc |= expect_renamed(l, out, hub, "mlp.fc2.bias", 1, C, 0);
    }
    rc |= expect_from(l, "hd.glb_GN", 1, 4 * C, 0, PHI3_VISION "glb_GN", 3, glb, 0);
    rc |= expect_from(l, "hd.sub_GN", 1, 4 * C, 0, PHI3_VISION "sub_GN", 4, sub, 0);
    rc |= expect_renamed(l, "hd.", PHI3_VISION, "img_projection.0.weight", 2, H, 4 * C);
    rc |= expect_renamed(l, "hd.", PHI3_VISION, "img_projection.0.bias", 1, H, 0);
    rc |= expect_renamed(l, "hd.", PHI3_VISION, "img_projection.2.weight", 2, H, H);
    rc |= expect_renamed(l, "hd.", PHI3_VISION, "img_projection.2.bias", 1, H, 0);
    rc |= expect(l, 2, c->vocab, H, "model.embed_tokens.weight");
    for (int64_t b = 0; b < c->layers && rc == 0; b++) {
        char p[48], name[MAX_NAME], hub[MAX_NAME];
        snprintf(p, sizeof p, "model.layers.%lld.", (long long)b);
        rc |= expect(l, 1, H, 0, "%sinput_layernorm.weight", p);
        rc |= expect(l, 1, H, 0, "%spost_attention_layernorm.weight", p);
        snprintf(hub, sizeof hub, "%sself_attn.qkv_proj.weight", p);
        static const char *const qkv[] = { "q_proj", "k_proj", "v_proj" };
        const int64_t rows[3] = { H, kv, kv }, first[3] = { 0, H, H + kv };
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "%sself_attn.%s.weight", p, qkv[k]);
            rc |= expect_split(l, name, hub, first[k], rows[k], H + 2 * kv, H);
        }
        rc |= expect(l, 2, H, H, "%sself_attn.o_proj.weight", p);
        snprintf(hub, sizeof hub, "%smlp.gate_up_proj.weight", p);
        snprintf(name, sizeof name, "%smlp.gate_proj.weight", p);
        rc |= expect_split(l, name, hub, 0, I, 2 * I, H);
        snprintf(name, sizeof name, "%smlp.up_proj.weight", p);
        rc |= expect_split(l, name, hub, I, I, 2 * I, H);
        rc |= expect(l, 2, H, I, "%smlp.down_proj.weight", p);
    }
    rc |= expect(l, 1, H, 0, "model.norm.weight");
    return rc ? -1 : 0;
}

/* Checkpoint tensors phi3_v leaves out on purpose: CLIP's last layer and post_layernorm (the
 * features are hidden_states[-2]), the language-model head, the image embedding's copy of wte. */
static int phi3_dropped(const model_config *c, const char *hub) {
    char last[MAX_NAME];
    snprintf(last, sizeof last, PHI3_CLIP "encoder.layers.%lld.", (long long)(c->clip_layers - 1));
    return strncmp(hub, last, strlen(last)) == 0 || strncmp(hub, PHI3_CLIP "post_layernorm.", strlen(PHI3_CLIP "post_layernorm.")) == 0 ||
           strcmp(hub, "lm_head.weight") == 0 || strcmp(hub, PHI3_VISION "wte.weight") == 0;
}

/* transformers 5 saves the CLIP tower without the `vision_model.` level; both spellings map to the
 * hub's (with it). Returns a new string. */
static char *phi3_canonical_name(const char *name) {
    static const char ip[] = PHI3_VISION "img_processor.";
    if (strncmp(name, ip, sizeof ip - 1) != 0 || strncmp(name + sizeof ip - 1, "vision_model.", 13) == 0) return cv_strdup(name);
    size_t n = strlen(name) + 14;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%svision_model.%s", ip, name + sizeof ip - 1);
    return out;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *hub_name(const expected_tensor *e) { return e->hub[0] ? e->hub : e->name; }

/* The first output made from checkpoint tensor `hub` (a fused phi3_v tensor makes several). */
static const expected_tensor *find_by_hub(const expected_list *l, const char *hub) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(hub_name(&l->items[i]), hub) == 0) return &l->items[i];
    return NULL;
}

/* The checkpoint's shape of e's source: [out, in] of the Linear an adapter module must fit. */
static const int64_t *source_shape(const expected_tensor *e, int *ndim) {
    *ndim = e->src_ndim ? e->src_ndim : e->ndim;
    return e->src_ndim ? e->src_shape : e->shape;
}

static void format_dims(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* The checkpoint stores the patch embedding as the Conv3d kernel [E, C, T, P, P]; flattened per
 * output channel it is exactly the [E, C*T*P*P] matrix of FORMAT.md (row-major, [c][t][y][x]). */
static int shape_fits(const model_config *c, const expected_tensor *e, const st_tensor *t) {
    if (e->src_ndim) {
        if (t->ndim != e->src_ndim) return 0;
        for (int i = 0; i < e->src_ndim; i++)
            if (t->shape[i] != e->src_shape[i]) return 0;
        return 1;
    }
    if (strcmp(e->name, "visual.patch_embed.proj.weight") == 0 && t->ndim == 5)
        return t->shape[0] == e->shape[0] && t->shape[1] == c->v_in_channels && t->shape[2] == c->v_temporal_patch &&
               t->shape[3] == c->v_patch && t->shape[4] == c->v_patch;
    if (t->ndim != e->ndim) return 0;
    for (int i = 0; i < e->ndim; i++)
        if (t->shape[i] != e->shape[i]) return 0;
    return 1;
}

static int shape_error(const char *where, const expected_tensor *e, const st_tensor *t, char *err, size_t errsize) {
    char have[128], want[128];
    int ndim;
    const int64_t *shape = source_shape(e, &ndim);
    format_dims(t->ndim, t->shape, have, sizeof have);
    format_dims(ndim, shape, want, sizeof want);
    const char *n = hub_name(e), *hint = "";
    if (ends_with(n, ".self_attn.qkv_proj.weight")) hint = " (qkv_proj stacks q, k and v: hidden_size + 2 * num_key_value_heads * head_dim rows)";
    if (ends_with(n, ".mlp.gate_up_proj.weight")) hint = " (gate_up_proj stacks gate and up: 2 * intermediate_size rows)";
    return cv_fail(err, errsize, "%s: tensor %s has shape %s, but config.json implies %s%s", where, n, have, want, hint);
}

/* ---- number formats ---- */

/* n, or the index of the first non-finite value: a branch-free pass per chunk (it vectorises), and a
 * scalar one only in the chunk that has one. */
static size_t first_non_finite(const float *x, size_t n) {
    enum { CHUNK = 256 }; /* a constant trip count, which gcc -O2 vectorises */
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        uint32_t bad = 0;
        if (n - i0 >= CHUNK)
            for (int i = 0; i < CHUNK; i++) {
                uint32_t u;
                memcpy(&u, &x[i0 + (size_t)i], 4);
                bad |= (u & 0x7F800000u) == 0x7F800000u; /* an all-ones exponent: infinity or NaN */
            }
        else
            bad = 1;
        if (bad)
            for (size_t i = i0; i < n && i < i0 + CHUNK; i++)
                if (!isfinite(x[i])) return i;
    }
    return n;
}

static int narrow(const float *src, size_t n, uint32_t dtype, void *dst, uint64_t base, const char *name, char *err, size_t errsize) {
    unsigned char *d = dst;
    if (dtype == ABC_FILE_F32) {
        const size_t i = first_non_finite(src, n);
        return i < n ? cv_fail(err, errsize, "non-finite value at element %llu", (unsigned long long)(base + i)) : 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(src[i])) return cv_fail(err, errsize, "non-finite value at element %llu", (unsigned long long)(base + i));
        uint16_t h;
        int rc = dtype == ABC_FILE_F16 ? abc_f32_to_f16(src[i], &h) : abc_f32_to_bf16(src[i], &h);
        if (rc < 0)
            return cv_fail(err, errsize, "value %g at element %llu of %s does not fit in %s", (double)src[i], (unsigned long long)(base + i),
                           name, dtype == ABC_FILE_F16 ? "f16" : "bf16");
        d[2 * i] = (unsigned char)(h & 0xFF);
        d[2 * i + 1] = (unsigned char)(h >> 8);
    }
    return 0;
}

/* ---- fill callbacks (run while the file is written) ---- */

static void free_fill_ctx(void *p) {
    fill_ctx *c = p;
    if (!c) return;
    free(c->source.merge_adapters);
    free(c->source.merge_modules);
    free(c);
}

/* Units [unit0, unit0 + units) of the output: rows, or strips of rows for a quantized type. Every
 * step works row by row (the LoRA/DoRA merges included, see peft_merge), so a piece is exactly the
 * corresponding rows of the whole tensor converted at once; pieces run concurrently on worker
 * threads and share nothing but read-only state. Errors name elements by their index in the tensor. */
static int fill_units(void *p, void *dst, uint64_t unit0, uint64_t units, char *err, size_t errsize) {
    const fill_ctx *c = p;
    const tensor_source *s = &c->source;
    const cv_quant_type *qt = cv_quant_find(c->dtype);
    const int64_t out = c->exp.shape[0], in = c->exp.shape[1], per = qt ? qt->strip_rows : 1;
    const int64_t r0 = (int64_t)unit0 * per, r1 = (int64_t)(unit0 + units) * per < out ? (int64_t)(unit0 + units) * per : out;
    const int64_t rows = r1 - r0;
    const uint64_t n = (uint64_t)(rows * in), base = (uint64_t)(r0 * in);
    /* a split phi3_v tensor is rows row0.. of its fused source */
    const uint64_t first = ((uint64_t)c->exp.row0 + (uint64_t)r0) * (uint64_t)in;
    float *w = c->dtype == ABC_FILE_F32 ? dst : malloc((size_t)n * sizeof *w + sizeof *w);
    if (!w) return cv_fail(err, errsize, "out of memory");
    int rc = st_read_f32_range(s->set, s->src, first, n, w, err, errsize);
    for (size_t i = 0; rc == 0 && i < s->n_merges; i++)
        rc = peft_merge(s->merge_adapters[i], s->merge_modules[i], w, c->exp.row0 + r0, rows, in, err, errsize);
    if (rc == 0 && c->post_scale != 1.0f)
        for (uint64_t i = 0; i < n; i++) w[i] = w[i] * c->post_scale;
    if (rc == 0 && qt) {
        rc = narrow(w, (size_t)n, ABC_FILE_F32, NULL, base, c->exp.name, err, errsize);
        if (rc == 0) rc = qt->encode(w, rows, in, (int64_t)units, dst, err, errsize);
    } else if (rc == 0) {
        rc = narrow(w, (size_t)n, c->dtype, dst, base, c->exp.name, err, errsize);
    }
    if (w != dst) free(w);
    return rc;
}

static int queue_tensor(abc_writer *w, const expected_tensor *e, const tensor_source *s, uint32_t dtype, float post_scale,
                        char *err, size_t errsize) {
    fill_ctx *c = calloc(1, sizeof *c);
    if (!c) return cv_fail(err, errsize, "out of memory");
    c->exp = *e;
    c->source = *s;
    c->source.merge_adapters = NULL;
    c->source.merge_modules = NULL;
    /* quantized only for matrices whose rows are whole blocks (the patch embedding's 1176 is not): f32 otherwise */
    const cv_quant_type *qt = cv_quant_find(dtype);
    if (qt && !(e->ndim == 2 && e->shape[1] % qt->block == 0)) {
        dtype = ABC_FILE_F32;
        qt = NULL;
    }
    c->dtype = dtype;
    c->post_scale = post_scale;
    if (s->n_merges) {
        c->source.merge_adapters = malloc(s->n_merges * sizeof *c->source.merge_adapters);
        c->source.merge_modules = malloc(s->n_merges * sizeof *c->source.merge_modules);
        if (!c->source.merge_adapters || !c->source.merge_modules) {
            free_fill_ctx(c);
            return cv_fail(err, errsize, "out of memory");
        }
        memcpy(c->source.merge_adapters, s->merge_adapters, s->n_merges * sizeof *s->merge_adapters);
        memcpy(c->source.merge_modules, s->merge_modules, s->n_merges * sizeof *s->merge_modules);
    }
    /* units: rows, or strips of rows */
    const uint64_t n_units = qt ? (uint64_t)((e->shape[0] + qt->strip_rows - 1) / qt->strip_rows) : (uint64_t)e->shape[0];
    const size_t unit_bytes = qt ? qt->strip_bytes(e->shape[1]) : (size_t)e->shape[1] * writer_dtype_size(dtype);
    if (writer_add_tensor_units(w, e->name, dtype, e->ndim, e->shape, n_units, unit_bytes, fill_units, c, free_fill_ctx) < 0)
        return cv_fail(err, errsize, "%s", writer_error(w));
    return 0;
}

/* ---- planning ---- */

static int is_head_param(const char *name) { return strncmp(name, "mlp_head.", 9) == 0; }

/* Base tensor names are mapped to the hub layout; a checkpoint holding both spellings of one
 * tensor is ambiguous. */
static int normalize_base_names(st_set *set, const cv_family *f, char *err, size_t errsize) {
    for (size_t i = 0; i < set->n_tensors; i++) {
        char *n = f->canonical_name(set->tensors[i].name);
        if (!n) return cv_fail(err, errsize, "out of memory");
        free(set->tensors[i].name);
        set->tensors[i].name = n;
    }
    for (size_t i = 0; i < set->n_tensors; i++)
        for (size_t j = i + 1; j < set->n_tensors; j++)
            if (strcmp(set->tensors[i].name, set->tensors[j].name) == 0)
                return cv_fail(err, errsize, "checkpoint has tensor %s twice (under both the hub and the newer transformers names)", set->tensors[i].name);
    return 0;
}

/* The tensors of the checkpoint that no output uses: lm_head (tied or not) is expected; anything
 * else under the model's own prefixes means the config and the weights disagree. */
static int check_unused_base(const conv_state *s, char *err, size_t errsize) {
    const cv_family *f = s->family;
    int noted_drop = 0;
    for (size_t i = 0; i < s->base.n_tensors; i++) {
        const char *n = s->base.tensors[i].name;
        if (find_by_hub(&s->exp, n) || strcmp(n, "lm_head.weight") == 0) continue;
        if (f->dropped && f->dropped(&s->cfg, n)) {
            if (!s->opt->quiet && !noted_drop++) fprintf(stderr, "abc-convert: note: %s\n", f->drop_note);
            continue;
        }
        int own = 0;
        for (size_t k = 0; k < sizeof f->prefixes / sizeof f->prefixes[0] && f->prefixes[k]; k++) own |= strncmp(n, f->prefixes[k], strlen(f->prefixes[k])) == 0;
        if (own)
            return cv_fail(err, errsize, "checkpoint tensor %s is not part of the model described by config.json (wrong config?)", n);
        if (!s->opt->quiet) fprintf(stderr, "abc-convert: note: ignoring checkpoint tensor %s (unused by the runtime)\n", n);
    }
    return 0;
}

/* Finds the mlp_head width D from the last adapter that provides the head. */
static int resolve_head(conv_state *s, char *err, size_t errsize) {
    const adapter_param *w1 = NULL;
    const char *from = NULL;
    for (size_t a = 0; a < s->n_merges; a++) {
        const adapter_param *p = peft_find_param(&s->merges[a], "mlp_head.linear_layer1.weight");
        if (p) { w1 = p; from = s->merges[a].dir; }
    }
    int abc = strcmp(s->opt->preset, "abc") == 0;
    if (!abc) return 0;
    if (!w1)
        return cv_fail(err, errsize, "preset abc needs the mlp_head (mlp_head.linear_layer1/2 in an adapter's modules_to_save); "
                                     "none of the --merge-adapter directories provides it");
    if (w1->t->ndim != 2 || w1->t->shape[1] != s->cfg.hidden)
        return cv_fail(err, errsize, "%s: mlp_head.linear_layer1.weight must be [D, %lld]", from, (long long)s->cfg.hidden);
    s->head_dim = w1->t->shape[0];
    return 0;
}

/* Presets with a multi-vector output and their projection's checkpoint module (a Linear with bias). */
static const struct { const char *preset, *module; } multi_vector_presets[] = {
    { "colqwen2", "custom_text_proj." }, /* colpali-engine's name, in the base or an adapter's modules_to_save */
    { "jina-v4", "multi_vector_projector." }, /* JinaEmbeddingsV4Model's; its task adapters carry a LoRA of it */
    { "colqwen2.5", "custom_text_proj." },
};

/* The multi-vector projection's width from the base or the last adapter that carries it. */
static int resolve_multi_vector(conv_state *s, char *err, size_t errsize) {
    for (size_t i = 0; i < sizeof multi_vector_presets / sizeof multi_vector_presets[0]; i++)
        if (strcmp(s->opt->preset, multi_vector_presets[i].preset) == 0) s->multi_hub = multi_vector_presets[i].module;
    if (!s->multi_hub) return 0;
    char name[MAX_NAME];
    snprintf(name, sizeof name, "%sweight", s->multi_hub);
    const st_tensor *w = st_find(&s->base, name);
    const char *from = s->opt->hf_dir;
    for (size_t a = 0; a < s->n_merges; a++) {
        const adapter_param *p = peft_find_param(&s->merges[a], name);
        if (p) { w = p->t; from = s->merges[a].dir; }
    }
    if (!w)
        return cv_fail(err, errsize, "preset %s needs the projection %s in the checkpoint or an adapter's modules_to_save; "
                                     "neither provides it", s->opt->preset, name);
    if (w->ndim != 2 || w->shape[1] != s->cfg.hidden || w->shape[0] < 1 || w->shape[0] > 65536)
        return cv_fail(err, errsize, "%s: %s must be [D, %lld]", from, name, (long long)s->cfg.hidden);
    s->multi_dim = w->shape[0];
    return 0;
}

/* Checks, before anything is written, that every adapter entry lands on a tensor of the model. */
static int check_merge_adapter(const conv_state *s, const peft_adapter *a, char *err, size_t errsize) {
    int abc = strcmp(s->opt->preset, "abc") == 0;
    const cv_family *f = s->family;
    for (size_t i = 0; i < a->n_modules; i++) {
        const lora_module *m = &a->modules[i];
        char wname[MAX_NAME + 16];
        snprintf(wname, sizeof wname, "%s.weight", m->module);
        const expected_tensor *e = find_by_hub(&s->exp, wname);
        if (!e && f->dropped && f->dropped(&s->cfg, wname)) {
            if (!s->opt->quiet) fprintf(stderr, "abc-convert: note: %s: skipping LoRA on %s (not part of the converted model)\n", a->dir, m->module);
            continue;
        }
        int ndim;
        const int64_t *shape = e ? source_shape(e, &ndim) : NULL;
        if (!e || ndim != 2 || strcmp(wname, "visual.patch_embed.proj.weight") == 0 || strcmp(wname, "model.embed_tokens.weight") == 0)
            return cv_fail(err, errsize, "adapter %s targets module %s, which does not exist in the model (or is not a Linear layer)", a->dir, m->module);
        if (m->B->shape[0] != shape[0] || m->A->shape[1] != shape[1])
            return cv_fail(err, errsize, "adapter %s: %s: lora_A [%lld, %lld] / lora_B [%lld, %lld] do not fit the weight [%lld, %lld]", a->dir, m->module,
                           (long long)m->A->shape[0], (long long)m->A->shape[1], (long long)m->B->shape[0], (long long)m->B->shape[1],
                           (long long)shape[0], (long long)shape[1]);
    }
    for (size_t i = 0; i < a->n_params; i++) {
        const adapter_param *p = &a->params[i];
        const expected_tensor *e = find_by_hub(&s->exp, p->name);
        if (e) {
            if (!shape_fits(&s->cfg, e, p->t)) return shape_error(a->dir, e, p->t, err, errsize);
            continue;
        }
        if (is_head_param(p->name) && abc)
            return cv_fail(err, errsize, "adapter %s: unexpected head tensor %s (the head is mlp_head.linear_layer1/2 .weight/.bias)", a->dir, p->name);
        if (!s->opt->quiet) fprintf(stderr, "abc-convert: note: %s: dropping %s (not used by the runtime with preset %s)\n", a->dir, p->name, s->opt->preset);
    }
    return 0;
}

/* An adapter kept apart (the query adapter, a task adapter; `what` names it in errors): plain LoRA on
 * Linear layers of the model only. */
static int check_runtime_adapter(const conv_state *s, const peft_adapter *q, const char *what, char *err, size_t errsize) {
    if (q->dora) return cv_fail(err, errsize, "%s %s is a DoRA adapter; only plain LoRA can be kept apart for run-time use (merge it with --merge-adapter instead)", what, q->dir);
    if (q->n_params) return cv_fail(err, errsize, "%s %s carries full parameters (%s, ...) that cannot be switched per call", what, q->dir, q->params[0].name);
    if (q->n_modules == 0) return cv_fail(err, errsize, "%s %s has no LoRA modules", what, q->dir);
    for (size_t i = 0; i < q->n_modules; i++) {
        const lora_module *m = &q->modules[i];
        char wname[MAX_NAME + 16];
        snprintf(wname, sizeof wname, "%s.weight", m->module);
        const expected_tensor *e = find_by_hub(&s->exp, wname); /* the checkpoint's module names */
        if (!e || e->ndim != 2 || strcmp(wname, "visual.patch_embed.proj.weight") == 0 || strcmp(wname, "model.embed_tokens.weight") == 0)
            return cv_fail(err, errsize, "%s %s targets module %s, which does not exist in the model (or is not a Linear layer)", what, q->dir, m->module);
        if (m->B->shape[0] != e->shape[0] || m->A->shape[1] != e->shape[1])
            return cv_fail(err, errsize, "%s %s: %s: lora_A/lora_B do not fit the weight [%lld, %lld]", what, q->dir, m->module,
                           (long long)e->shape[0], (long long)e->shape[1]);
    }
    return 0;
}

/* The source of tensor e: the base checkpoint, then each adapter in order (modules_to_save
 * replaces the current value, LoRA/DoRA merges into it). */
static int resolve_source(const conv_state *s, const expected_tensor *e, tensor_source *src, const peft_adapter **adapters,
                          const lora_module **modules, char *err, size_t errsize) {
    memset(src, 0, sizeof *src);
    src->merge_adapters = adapters;
    src->merge_modules = modules;
    const char *hub = hub_name(e);
    const st_tensor *t = st_find(&s->base, hub);
    /* Phi-3-V's image embedding shares the token embedding (vision_embed_tokens.wte); a checkpoint
     * saved with shared tensors deduplicated may keep it under that name only */
    if (!t && s->family->embed_alias && strcmp(hub, "model.embed_tokens.weight") == 0) t = st_find(&s->base, s->family->embed_alias);
    if (t) { src->set = &s->base; src->src = t; }
    char module[MAX_NAME];
    size_t len = strlen(hub);
    int is_weight = len > 7 && strcmp(hub + len - 7, ".weight") == 0;
    snprintf(module, sizeof module, "%.*s", (int)(is_weight ? len - 7 : len), hub);
    for (size_t a = 0; a < s->n_merges; a++) {
        const adapter_param *p = peft_find_param(&s->merges[a], hub);
        if (p) {
            src->set = &s->merges[a].st;
            src->src = p->t;
            src->n_merges = 0;
        }
        const lora_module *m = is_weight ? peft_find_module(&s->merges[a], module) : NULL;
        if (m) {
            if (!src->src)
                return cv_fail(err, errsize, "adapter %s merges into %s, which is missing from the checkpoint", s->merges[a].dir, hub);
            adapters[src->n_merges] = &s->merges[a];
            modules[src->n_merges] = m;
            src->n_merges++;
        }
    }
    if (!src->src) return cv_fail(err, errsize, "tensor %s is missing from the checkpoint %s", hub, s->opt->hf_dir);
    if (!shape_fits(&s->cfg, e, src->src)) return shape_error(src->set == &s->base ? s->opt->hf_dir : "adapter", e, src->src, err, errsize);
    return 0;
}

/* The adapter's CLIP module and parameter names in the hub spelling (phi3_canonical_name). */
static int phi3_canonical_adapter(peft_adapter *a, char *err, size_t errsize) {
    for (size_t i = 0; i < a->n_modules + a->n_params; i++) {
        char **name = i < a->n_modules ? &a->modules[i].module : &a->params[i - a->n_modules].name;
        char *c = phi3_canonical_name(*name);
        if (!c) return cv_fail(err, errsize, "out of memory");
        free(*name);
        *name = c;
    }
    for (size_t i = 0; i < a->n_modules; i++)
        for (size_t j = i + 1; j < a->n_modules; j++)
            if (strcmp(a->modules[i].module, a->modules[j].module) == 0)
                return cv_fail(err, errsize, "%s: module %s is stored twice (with and without the vision_model. level)", a->dir, a->modules[i].module);
    for (size_t i = 0; i < a->n_params; i++)
        for (size_t j = i + 1; j < a->n_params; j++)
            if (strcmp(a->params[i].name, a->params[j].name) == 0)
                return cv_fail(err, errsize, "%s: parameter %s is stored twice (with and without the vision_model. level)", a->dir, a->params[i].name);
    return 0;
}

/* ---- the mixed-precision policy ---- */

static const char *const class_names[CV_N_CLASSES] = {"attn", "mlp", "down", "embed", "vision", "merger", "head"};

int cv_dtype_parse(const char *name, uint32_t *dtype) {
    static const struct { const char *name; uint32_t dtype; } types[] = {
        {"f32", ABC_FILE_F32}, {"f16", ABC_FILE_F16}, {"bf16", ABC_FILE_BF16}, {"q8", ABC_FILE_Q8}, {"q4", ABC_FILE_Q4},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(name, types[i].name) == 0) {
            *dtype = types[i].dtype;
            return 0;
        }
    return -1;
}

const char *cv_dtype_name(uint32_t dtype) {
    switch (dtype) {
    case ABC_FILE_F16: return "f16";
    case ABC_FILE_BF16: return "bf16";
    case ABC_FILE_Q8: return "q8";
    case ABC_FILE_Q4: return "q4";
    default: return "f32";
    }
}

void cv_policy_init(convert_options *opt) {
    for (int c = 0; c < CV_N_CLASSES; c++) opt->class_dtype[c] = opt->dtype;
    if (opt->dtype == ABC_FILE_Q4) { /* bench/RESULTS.md "q4": attention in q4 costs the most cosine per byte */
        opt->class_dtype[CV_CLASS_ATTN] = ABC_FILE_Q8;
        opt->class_dtype[CV_CLASS_VISION] = ABC_FILE_Q8;
        opt->class_dtype[CV_CLASS_MERGER] = ABC_FILE_Q8;
        opt->class_dtype[CV_CLASS_HEAD] = ABC_FILE_Q8;
    }
}

int cv_policy_parse(convert_options *opt, const char *spec, char *err, size_t errsize) {
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char dtype_name[8];
        int c = 0;
        const int text = eq && eq - p == 4 && !memcmp(p, "text", 4); /* the three language-model classes */
        while (eq && !text && c < CV_N_CLASSES && !(strlen(class_names[c]) == (size_t)(eq - p) && !memcmp(p, class_names[c], (size_t)(eq - p)))) c++;
        size_t vlen = eq ? len - (size_t)(eq - p) - 1 : 0;
        if (!eq || c == CV_N_CLASSES || vlen == 0 || vlen >= sizeof dtype_name)
            return cv_fail(err, errsize, "--policy \"%s\": each item is CLASS=DTYPE, CLASS one of text (= attn, mlp and down), "
                           "attn, mlp, down, embed, vision, merger, head", spec);
        memcpy(dtype_name, eq + 1, vlen);
        dtype_name[vlen] = '\0';
        uint32_t dtype;
        if (cv_dtype_parse(dtype_name, &dtype) < 0)
            return cv_fail(err, errsize, "--policy: unknown dtype \"%s\" for %.*s (f32, f16, bf16, q8 or q4)", dtype_name, (int)(eq - p), p);
        if (text) opt->class_dtype[CV_CLASS_ATTN] = opt->class_dtype[CV_CLASS_MLP] = opt->class_dtype[CV_CLASS_DOWN] = dtype;
        else opt->class_dtype[c] = dtype;
        p += len + (end != NULL);
    }
    return 0;
}

void cv_policy_describe(const convert_options *opt, char *out, size_t size) {
    size_t n = 0;
    out[0] = '\0';
    for (int c = 0; c < CV_N_CLASSES && n < size; c++)
        n += (size_t)snprintf(out + n, size - n, "%s%s=%s", c ? "," : "", class_names[c], cv_dtype_name(opt->class_dtype[c]));
}

/* The policy's dtype for a 2-D tensor (by its output name). */
static uint32_t policy_dtype(const convert_options *opt, const char *name) {
    int c = CV_CLASS_MLP; /* the towers first: CLIP's layers have self_attn too */
    if (strncmp(name, "visual.merger.", 14) == 0 || strncmp(name, "hd.", 3) == 0) c = CV_CLASS_MERGER;
    else if (strncmp(name, "visual.", 7) == 0 || strncmp(name, "clip.", 5) == 0) c = CV_CLASS_VISION;
    else if (strncmp(name, "mlp_head.", 9) == 0 || strncmp(name, "multi_vector.", 13) == 0) c = CV_CLASS_HEAD;
    else if (strcmp(name, "model.embed_tokens.weight") == 0) c = CV_CLASS_EMBED;
    else if (strstr(name, ".self_attn.")) c = CV_CLASS_ATTN;
    else if (strstr(name, ".mlp.down_proj.")) c = CV_CLASS_DOWN;
    return opt->class_dtype[c];
}

static int queue_model_tensors(const conv_state *s, abc_writer *w, char *err, size_t errsize) {
    const peft_adapter **adapters = malloc((s->n_merges + 1) * sizeof *adapters);
    const lora_module **modules = malloc((s->n_merges + 1) * sizeof *modules);
    int rc = 0;
    if (!adapters || !modules) rc = cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; rc == 0 && i < s->exp.n; i++) {
        const expected_tensor *e = &s->exp.items[i];
        tensor_source src;
        rc = resolve_source(s, e, &src, adapters, modules, err, errsize);
        if (rc == 0) rc = queue_tensor(w, e, &src, e->ndim == 2 ? policy_dtype(s->opt, e->name) : ABC_FILE_F32, 1.0f, err, errsize);
    }
    free(adapters);
    free(modules);
    return rc;
}

/* <prefix><module>.lora_A [r, in] and .lora_B [out, r] (scale folded in), float32, in the model's
 * tensor order so the output does not depend on the adapter file's key order; prefix "query_adapter."
 * or "task_adapter.NAME.". */
static int queue_runtime_adapter(conv_state *s, abc_writer *w, const peft_adapter *q, const char *prefix, char *err, size_t errsize) {
    /* the expected list outlives the writer's callbacks; append the adapter entries to it. The adapter
     * names its modules as the checkpoint does (hub), the file as the model does (name) */
    size_t n_model = s->exp.n;
    for (size_t i = 0; i < n_model; i++) {
        char module[MAX_NAME], hub[MAX_NAME];
        const char *name = s->exp.items[i].name, *hname = hub_name(&s->exp.items[i]);
        size_t len = strlen(name), hlen = strlen(hname);
        if (len <= 7 || strcmp(name + len - 7, ".weight") != 0 || hlen <= 7) continue;
        snprintf(module, sizeof module, "%.*s", (int)(len - 7), name);
        snprintf(hub, sizeof hub, "%.*s", (int)(hlen - 7), hname);
        const lora_module *m = peft_find_module(q, hub);
        if (!m) continue;
        if (expect(&s->exp, 2, m->rank, m->A->shape[1], "%s%s.lora_A", prefix, module) < 0 ||
            expect(&s->exp, 2, m->B->shape[0], m->rank, "%s%s.lora_B", prefix, module) < 0)
            return cv_fail(err, errsize, "out of memory");
        for (int k = 0; k < 2; k++) {
            tensor_source src = { &q->st, k ? m->B : m->A, 0, NULL, NULL };
            if (queue_tensor(w, &s->exp.items[s->exp.n - 2 + k], &src, ABC_FILE_F32, k ? (float)m->scale : 1.0f, err, errsize) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---- metadata ---- */

#define QWEN_SYSTEM "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
#define QWEN_ASSISTANT "<|im_end|>\n<|im_start|>assistant\n"
#define QWEN_IMAGE "<|vision_start|><|image_pad|><|vision_end|>"
#define GME_END "<|endoftext|>"
#define COLQWEN_USER "<|im_start|>user\n"
#define COLQWEN_END "<|im_end|><|endoftext|>"
#define COLQWEN_AUGMENT "<|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|><|endoftext|>"
#define COLQWEN_MAX_PIXELS (768 * 28 * 28)
#define GME_SYSTEM "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n"

static const char *base_name(const char *path, char *buf, size_t size) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, size, "%.*s", (int)(n - start), path + start);
    return buf;
}

/* Informative only; made of directory base names so that the same inputs give the same bytes
 * wherever they are on disk. */
static int describe_source(const conv_state *s, char *out, size_t size) {
    char b[256];
    size_t n = (size_t)snprintf(out, size, "%s", base_name(s->opt->hf_dir, b, sizeof b));
    for (size_t i = 0; i < s->n_merges && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, " + merged adapter %s", base_name(s->merges[i].dir, b, sizeof b));
    if (s->has_query && n < size) n += (size_t)snprintf(out + n, size - n, " + query adapter %s", base_name(s->query.dir, b, sizeof b));
    for (size_t i = 0; i < s->n_tasks && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, " + task adapter %s=%s", s->task_names[i], base_name(s->tasks[i].dir, b, sizeof b));
    return n < size ? 0 : -1;
}

static int add_i(abc_writer *w, const char *key, int64_t v) { return writer_add_i64(w, key, &v, 1); }
static int add_f(abc_writer *w, const char *key, double v) { return writer_add_f64(w, key, &v, 1); }

/* The general.* entries and the decoder's text.* entries both architectures share. */
static int add_metadata_general(const conv_state *s, abc_writer *w, const char *architecture, char *err,
                                size_t errsize) {
    const model_config *c = &s->cfg;
    const char *dtype = cv_dtype_name(s->opt->dtype);
    char policy[128];
    cv_policy_describe(s->opt, policy, sizeof policy);
    int mixed = 0; /* general.policy only where the classes differ from general.dtype (older files stay byte-identical) */
    for (int c = 0; c < CV_N_CLASSES; c++) mixed |= s->opt->class_dtype[c] != s->opt->dtype;
    char source[2048];
    if (describe_source(s, source, sizeof source) < 0) return cv_fail(err, errsize, "input paths too long");
    int rc = 0;
    rc |= writer_add_str(w, "general.architecture", architecture);
    rc |= writer_add_str(w, "general.preset", s->opt->preset);
    rc |= writer_add_str(w, "general.dtype", dtype);
    if (mixed) rc |= writer_add_str(w, "general.policy", policy);
    rc |= writer_add_str(w, "general.source", source);
    rc |= add_i(w, "text.hidden_size", c->hidden);
    rc |= add_i(w, "text.intermediate_size", c->intermediate);
    rc |= add_i(w, "text.num_layers", c->layers);
    rc |= add_i(w, "text.num_heads", c->heads);
    rc |= add_i(w, "text.num_kv_heads", c->kv_heads);
    rc |= add_i(w, "text.head_dim", c->head_dim);
    rc |= add_i(w, "text.vocab_size", c->vocab);
    rc |= add_f(w, "text.rms_norm_eps", c->rms_eps);
    rc |= add_f(w, "text.rope_theta", c->rope_theta);
    if (rc) return cv_fail(err, errsize, "metadata: %s", writer_error(w));
    return 0;
}

/* phi3_v (FORMAT.md, "Architecture phi3_v"); preset vlm2vec-phi3v: VLM2Vec-Full's causal
 * last-token embedding, prompts "<|image_1|> {text}" / "{text}". */
static int add_metadata_phi3(const conv_state *s, abc_writer *w, char *err, size_t errsize) {
    const model_config *c = &s->cfg;
    int rc = 0;
    if (add_metadata_general(s, w, "phi3_v", err, errsize) < 0) return -1;
    rc |= writer_add_str(w, "text.rope_scaling", c->rope_su ? "su" : "none");
    if (c->rope_su) {
        rc |= writer_add_f64(w, "text.rope_short_factor", c->rope_short, (size_t)(c->head_dim / 2));
        rc |= writer_add_f64(w, "text.rope_long_factor", c->rope_long, (size_t)(c->head_dim / 2));
        rc |= add_i(w, "text.original_max_position_embeddings", c->original_max_position);
        rc |= add_i(w, "text.max_position_embeddings", c->max_position);
    }
    rc |= add_i(w, "clip.hidden_size", c->clip_hidden);
    rc |= add_i(w, "clip.intermediate_size", c->clip_intermediate);
    rc |= add_i(w, "clip.num_heads", c->clip_heads);
    rc |= add_i(w, "clip.num_layers", c->clip_layers - 1); /* stored and run: hidden_states[-2] */
    rc |= add_i(w, "clip.image_size", c->clip_image);
    rc |= add_i(w, "clip.patch_size", c->clip_patch);
    rc |= add_f(w, "clip.layer_norm_eps", c->clip_eps);
    rc |= add_i(w, "hd.num_crops", s->opt->num_crops > 0 ? s->opt->num_crops : c->num_crops);
    rc |= add_i(w, "hd.num_img_tokens", c->num_img_tokens);
    rc |= writer_add_f64(w, "image.mean", c->image_mean, 3);
    rc |= writer_add_f64(w, "image.std", c->image_std, 3);
    rc |= add_i(w, "tokens.bos", c->bos_token);
    rc |= writer_add_str(w, "prompt.image_placeholder", "<|image_1|>");
    rc |= writer_add_str(w, "prompt.image_text", "<|image_1|> {text}");
    rc |= writer_add_str(w, "prompt.image", "<|image_1|>");
    rc |= writer_add_str(w, "prompt.text", "{text}");
    rc |= writer_add_str(w, "model.attention", "causal");
    rc |= writer_add_str(w, "model.pooling", "last");
    rc |= writer_add_str(w, "model.head", "none");
    rc |= add_i(w, "model.normalize", 1);
    rc |= add_i(w, "model.embedding_dim", c->hidden);
    rc |= add_i(w, "query_adapter.rank", 0);
    if (rc) return cv_fail(err, errsize, "metadata: %s", writer_error(w));
    return 0;
}

/* The adapter slots' and Matryoshka metadata (FORMAT.md), for any family that takes --task-adapter:
 * the names in slot order, the default task (jina's "retrieval" when there is one), and jina-v4's rule
 * that text-matching embeds both sides with the query prompt. Returns the writer's error bits. */
static int add_task_metadata(const conv_state *s, abc_writer *w) {
    const model_config *c = &s->cfg;
    int rc = 0;
    if (c->n_matryoshka) rc |= writer_add_i64(w, "model.matryoshka_dims", c->matryoshka, (size_t)c->n_matryoshka);
    if (!s->n_tasks) return rc;
    char names[1024] = "";
    size_t n = 0;
    int has_retrieval = 0, has_matching = 0;
    for (size_t i = 0; i < s->n_tasks && n < sizeof names; i++) {
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? "," : "", s->task_names[i]);
        has_retrieval |= strcmp(s->task_names[i], "retrieval") == 0;
        has_matching |= strcmp(s->task_names[i], "text-matching") == 0;
    }
    rc |= writer_add_str(w, "task_adapter.names", names);
    rc |= writer_add_str(w, "task_adapter.default", has_retrieval ? "retrieval" : s->task_names[0]);
    if (strcmp(s->opt->preset, "jina-v4") == 0 && has_matching)
        rc |= writer_add_str(w, "task_adapter.query_prompt", "text-matching");
    return rc;
}

/* ColQwen2Processor / ColQwen2_5_Processor: documents are images under a fixed instruction (an image with
 * text puts the text in its place); queries get "Query: ", then 10 pad tokens (query augmentation), and
 * ColQwen2's alone a "\n" after them. Returns the writer's error bits. */
static int add_colqwen_prompts(abc_writer *w, int newline) {
    int rc = writer_add_str(w, "prompt.image_text", COLQWEN_USER QWEN_IMAGE "{text}" COLQWEN_END);
    rc |= writer_add_str(w, "prompt.image", COLQWEN_USER QWEN_IMAGE "Describe the image." COLQWEN_END);
    rc |= writer_add_str(w, "prompt.text", newline ? "Query: {text}" COLQWEN_AUGMENT "\n" : "Query: {text}" COLQWEN_AUGMENT);
    return rc;
}

/* The M-RoPE sections and the ViT's sizes, the same keys for Qwen2-VL and Qwen2.5-VL. */
static int add_qwen_vision_sizes(abc_writer *w, const model_config *c) {
    int rc = 0;
    rc |= writer_add_i64(w, "text.mrope_section", c->mrope_section, 3);
    rc |= add_i(w, "vision.depth", c->v_depth);
    rc |= add_i(w, "vision.embed_dim", c->v_embed);
    rc |= add_i(w, "vision.num_heads", c->v_heads);
    rc |= add_i(w, "vision.mlp_dim", c->v_mlp);
    rc |= add_i(w, "vision.patch_size", c->v_patch);
    rc |= add_i(w, "vision.temporal_patch_size", c->v_temporal_patch);
    rc |= add_i(w, "vision.spatial_merge_size", c->v_merge);
    rc |= add_i(w, "vision.in_channels", c->v_in_channels);
    rc |= add_i(w, "vision.out_dim", c->v_out);
    return rc;
}

static int add_metadata_qwen2vl(const conv_state *s, abc_writer *w, char *err, size_t errsize) {
    const model_config *c = &s->cfg;
    int abc = strcmp(s->opt->preset, "abc") == 0, gme = strcmp(s->opt->preset, "gme") == 0;
    int col = strcmp(s->opt->preset, "colqwen2") == 0;
    int rc = 0;
    if (add_metadata_general(s, w, "qwen2_vl", err, errsize) < 0) return -1;
    rc |= add_qwen_vision_sizes(w, c);
    rc |= add_f(w, "vision.layer_norm_eps", 1e-6);   /* fixed in transformers' Qwen2-VL vision blocks */
    rc |= add_f(w, "vision.rope_theta", 10000.0);
    rc |= writer_add_str(w, "model.attention", abc ? "bidirectional" : "causal");
    rc |= writer_add_str(w, "model.pooling", abc ? "mean_nonzero" : col ? "none" : "last");
    rc |= writer_add_str(w, "model.head", abc ? "mlp" : "none");
    rc |= add_i(w, "model.normalize", 1);
    rc |= add_i(w, "model.embedding_dim", c->hidden);
    if (s->multi_dim > 0) rc |= add_i(w, "model.multi_vector_dim", s->multi_dim);
    /* GME runs the decoder without position ids: transformers 4.4x then numbers every token as text */
    rc |= writer_add_str(w, "model.mrope_rule", gme ? "sequential" : "vision_start");
    rc |= add_i(w, "tokens.image_pad", c->image_token);
    rc |= add_i(w, "tokens.vision_start", c->vision_start_token);
    rc |= add_i(w, "tokens.vision_end", c->vision_end_token);
    if (abc) {
        rc |= writer_add_str(w, "prompt.image_text", QWEN_SYSTEM QWEN_IMAGE "Instruction: {text}" QWEN_ASSISTANT);
        rc |= writer_add_str(w, "prompt.image", QWEN_SYSTEM QWEN_IMAGE QWEN_ASSISTANT);
        rc |= writer_add_str(w, "prompt.text", QWEN_SYSTEM "{text}" QWEN_ASSISTANT);
    } else if (gme) {
        /* gme_inference.py: the image before the text in one user turn, and <|endoftext|> after the
         * assistant header is the pooled last token */
        rc |= writer_add_str(w, "prompt.image_text", GME_SYSTEM QWEN_IMAGE "{text}" QWEN_ASSISTANT GME_END);
        rc |= writer_add_str(w, "prompt.image", GME_SYSTEM QWEN_IMAGE QWEN_ASSISTANT GME_END);
        rc |= writer_add_str(w, "prompt.text", GME_SYSTEM "{text}" QWEN_ASSISTANT GME_END);
        rc |= writer_add_str(w, "prompt.instruction", "You are a helpful assistant.");
    } else if (col) {
        rc |= add_colqwen_prompts(w, 1);
    } else {
        rc |= writer_add_str(w, "prompt.image_text", "<|image_pad|> {text}");
        rc |= writer_add_str(w, "prompt.image", "<|image_pad|>");
        rc |= writer_add_str(w, "prompt.text", "{text}");
    }
    rc |= writer_add_str(w, "prompt.image_placeholder", "<|image_pad|>");
    if (!abc && !gme && !col && c->video_token >= 0) {
        /* VLM2Vec-V2 video: its demo's prompt shape and qwen_vl_utils' frame bounds (min_pixels 4·28·28,
         * the demo's max_pixels 360·420); the processor's image bounds then apply to each frame */
        rc |= add_i(w, "tokens.video_pad", c->video_token);
        rc |= writer_add_str(w, "prompt.video_placeholder", "<|video_pad|>");
        rc |= writer_add_str(w, "prompt.video_text", "<|video_pad|> {text}");
        rc |= writer_add_str(w, "prompt.video", "<|video_pad|>");
        rc |= add_i(w, "video.min_pixels", 3136);
        rc |= add_i(w, "video.max_pixels", 151200);
    }
    rc |= add_i(w, "image.factor", c->v_patch * c->v_merge);
    if (abc || gme) {
        /* ABC and GME fix both resize stages in their own code (qwen_vl_utils' bounds, then the
         * processor's: 256..1024 image tokens for ABC, 256..1280 for GME) */
        rc |= add_i(w, "image.stage1_min_pixels", 3136);
        rc |= add_i(w, "image.stage1_max_pixels", 12845056);
        rc |= add_i(w, "image.min_pixels", 200704);
        rc |= add_i(w, "image.max_pixels", gme ? 1003520 : 802816);
    } else {
        /* colpali-engine's ColQwen2Processor caps documents at 768 image tokens */
        rc |= add_i(w, "image.min_pixels", c->min_pixels);
        rc |= add_i(w, "image.max_pixels", col && c->max_pixels > COLQWEN_MAX_PIXELS ? COLQWEN_MAX_PIXELS : c->max_pixels);
    }
    rc |= writer_add_f64(w, "image.mean", c->image_mean, 3);
    rc |= writer_add_f64(w, "image.std", c->image_std, 3);
    rc |= add_i(w, "query_adapter.rank", s->has_query ? s->query.max_rank : 0);
    rc |= add_task_metadata(s, w);
    if (rc) return cv_fail(err, errsize, "metadata: %s", writer_error(w));
    return 0;
}

/* qwen2_5_vl; preset nomic (nomic-embed-multimodal, colpali-engine's BiQwen2_5 as of its release):
 * its processor's document and query prompts, causal attention, the last token, L2-normalised;
 * the checkpoint's image bounds. */
#define NOMIC_DOC_START "<|im_start|>user\n" QWEN_IMAGE
#define NOMIC_DOC_END "<|im_end|>" GME_END
static int add_metadata_qwen25vl(const conv_state *s, abc_writer *w, char *err, size_t errsize) {
    const model_config *c = &s->cfg;
    const int jina = strcmp(s->opt->preset, "jina-v4") == 0, col = strcmp(s->opt->preset, "colqwen2.5") == 0;
    int rc = 0;
    if (add_metadata_general(s, w, "qwen2_5_vl", err, errsize) < 0) return -1;
    rc |= add_qwen_vision_sizes(w, c);
    rc |= add_f(w, "vision.layer_norm_eps", 1e-6);   /* Qwen2_5_VLRMSNorm's fixed eps in the ViT */
    rc |= add_f(w, "vision.rope_theta", 10000.0);
    rc |= add_i(w, "vision.window_size", c->v_window);
    rc |= writer_add_i64(w, "vision.fullatt_blocks", c->fullatt, (size_t)c->n_fullatt);
    rc |= writer_add_str(w, "model.attention", "causal");
    rc |= writer_add_str(w, "model.pooling", jina ? "mean_vision_span" : col ? "none" : "last");
    rc |= writer_add_str(w, "model.head", "none");
    rc |= add_i(w, "model.normalize", 1);
    rc |= add_i(w, "model.embedding_dim", c->hidden);
    if (s->multi_dim > 0) rc |= add_i(w, "model.multi_vector_dim", s->multi_dim);
    rc |= writer_add_str(w, "model.mrope_rule", "vision_start");
    rc |= add_i(w, "tokens.image_pad", c->image_token);
    rc |= add_i(w, "tokens.vision_start", c->vision_start_token);
    rc |= add_i(w, "tokens.vision_end", c->vision_end_token);
    if (jina) {
        /* modeling_jina_embeddings_v4.py: texts "Query: " / "Passage: " + text with no template (text-matching
         * embeds both sides as queries), an image alone in a fixed user turn; no image+text input */
        rc |= writer_add_str(w, "prompt.image", "<|im_start|>user\n" QWEN_IMAGE "Describe the image.<|im_end|>\n");
        rc |= writer_add_str(w, "prompt.text", "Query: {text}");
        rc |= writer_add_str(w, "prompt.text_candidate", "Passage: {text}");
    } else if (col) {
        rc |= add_colqwen_prompts(w, 0);
    } else {
        rc |= writer_add_str(w, "prompt.image_text", NOMIC_DOC_START "{text}" NOMIC_DOC_END);
        rc |= writer_add_str(w, "prompt.image", NOMIC_DOC_START "Describe the image." NOMIC_DOC_END);
        rc |= writer_add_str(w, "prompt.text", "Query: {text}" GME_END);
    }
    rc |= writer_add_str(w, "prompt.image_placeholder", "<|image_pad|>");
    rc |= add_i(w, "image.factor", c->v_patch * c->v_merge);
    rc |= add_i(w, "image.min_pixels", c->min_pixels);
    /* ColQwen2_5_Processor caps documents at 768 image tokens, as ColQwen2's */
    rc |= add_i(w, "image.max_pixels", col && c->max_pixels > COLQWEN_MAX_PIXELS ? COLQWEN_MAX_PIXELS : c->max_pixels);
    rc |= writer_add_f64(w, "image.mean", c->image_mean, 3);
    rc |= writer_add_f64(w, "image.std", c->image_std, 3);
    rc |= add_i(w, "query_adapter.rank", 0);
    rc |= add_task_metadata(s, w);
    if (rc) return cv_fail(err, errsize, "metadata: %s", writer_error(w));
    return 0;
}

/* Older configs may lack the special token ids; tokenizer.json's added_tokens has them. */
static int fill_token_ids(conv_state *s, const char *tokenizer_path, char *err, size_t errsize) {
    model_config *c = &s->cfg;
    if (c->image_token >= 0 && c->vision_start_token >= 0 && c->vision_end_token >= 0 && c->video_token >= 0) return 0;
    json_value *tok = cv_read_json(tokenizer_path, err, errsize);
    if (!tok) return -1;
    const json_value *added = json_get(tok, "added_tokens");
    struct { const char *text; int64_t *id; } want[] = {
        { "<|image_pad|>", &c->image_token }, { "<|vision_start|>", &c->vision_start_token }, { "<|vision_end|>", &c->vision_end_token },
        { "<|video_pad|>", &c->video_token } };
    int rc = 0;
    for (size_t k = 0; k < 4 && rc == 0; k++) {
        if (*want[k].id >= 0) continue;
        for (size_t i = 0; added && added->type == JSON_ARRAY && i < added->n_items; i++) {
            const json_value *content = json_get(&added->items[i], "content");
            if (content && content->type == JSON_STRING && strcmp(content->string, want[k].text) == 0)
                cv_json_int(json_get(&added->items[i], "id"), 0, INT32_MAX, want[k].id);
        }
        /* <|video_pad|> is optional: without it the file has no video input */
        if (*want[k].id < 0 && k < 3) rc = cv_fail(err, errsize, "no token id for %s in config.json or tokenizer.json", want[k].text);
    }
    json_free(tok);
    return rc;
}

/* ---- the families ---- */

static const cv_family families[] = {
    { ARCH_QWEN2_VL, { "abc", "vlm2vec", "gme", "colqwen2", NULL }, "%s is a Qwen2-VL checkpoint: use --preset abc, vlm2vec, gme or colqwen2", 1, 1, 0,
      cv_normalize_name, NULL, fill_token_ids, build_expected_qwen2vl, NULL, NULL, { "model.layers.", "visual.", NULL }, NULL,
      add_metadata_qwen2vl },
    { ARCH_PHI3_V, { "vlm2vec-phi3v", NULL, NULL }, "%s is a Phi-3-V (phi3_v) checkpoint: use --preset vlm2vec-phi3v", 0, 0, 1,
      phi3_canonical_name, phi3_canonical_adapter, NULL, build_expected_phi3, phi3_dropped,
      "dropping CLIP's last layer and post_layernorm (the image features are hidden_states[-2])",
      { "model.layers.", "visual.", PHI3_VISION }, PHI3_VISION "wte.weight", add_metadata_phi3 },
    { ARCH_QWEN2_5_VL, { "nomic", "jina-v4", "colqwen2.5", NULL }, "%s is a Qwen2.5-VL (qwen2_5_vl) checkpoint: use --preset nomic, jina-v4 or colqwen2.5", 0, 1, 0,
      cv_normalize_name, NULL, fill_token_ids, build_expected_qwen2vl, NULL, NULL, { "model.layers.", "visual.", NULL }, NULL,
      add_metadata_qwen25vl },
};

static int has_preset(const cv_family *f, const char *preset) {
    for (size_t k = 0; k < sizeof f->presets / sizeof f->presets[0] && f->presets[k]; k++)
        if (strcmp(f->presets[k], preset) == 0) return 1;
    return 0;
}

static const char *family_name(const cv_family *f) { return config_arch_name(f->arch); }

/* Whether some family takes the preset; the error lists them all ("a, b or c"). */
int cv_known_preset(const char *preset, char *err, size_t errsize) {
    char list[256] = "";
    size_t n = 0, total = 0, k_all = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (has_preset(&families[i], preset)) return 1;
        for (size_t k = 0; families[i].presets[k]; k++) total++;
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        for (size_t k = 0; families[i].presets[k] && n < sizeof list; k++, k_all++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", k_all == 0 ? "" : k_all + 1 == total ? " or " : ", ", families[i].presets[k]);
    cv_fail(err, errsize, "unknown --preset \"%s\" (%s)", preset, list);
    return 0;
}

/* ---- driver ---- */

/* The progress line (convert_options.progress): tensor i/n, GB written, rate, time left; redrawn
 * at most four times a second on the same line. */
typedef struct {
    double start, last;
    int drawn;
} progress_state;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void show_progress(void *p, size_t tensor, size_t n_tensors, uint64_t done, uint64_t total) {
    progress_state *ps = p;
    const double t = now_seconds();
    if (done < total && t - ps->last < 0.25) return;
    ps->last = t;
    const double elapsed = t - ps->start, rate = elapsed > 0 ? (double)done / elapsed : 0;
    const double left = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\rabc-convert: tensor %zu/%zu  %.2f/%.2f GB  %.0f MB/s  ETA %d:%02d ", tensor + 1, n_tensors, (double)done / 1e9,
            (double)total / 1e9, rate / 1e6, (int)left / 60, (int)left % 60);
    ps->drawn = 1;
}

static void state_free(conv_state *s) {
    st_close(&s->base);
    for (size_t i = 0; i < s->n_merges; i++) peft_free(&s->merges[i]);
    free(s->merges);
    if (s->has_query) peft_free(&s->query);
    for (size_t i = 0; i < s->n_tasks; i++) {
        peft_free(&s->tasks[i]);
        free(s->task_names[i]);
    }
    free(s->tasks);
    free(s->task_names);
    free(s->exp.items);
}

/* --task-adapters DIR: every task of one multi-task adapter, in byte order of the names. Its tasks adapt
 * the same modules (jina's MultiAdapterLinear holds a pair for every task in every adapted Linear). */
static int load_multi_task(conv_state *s, const char *dir, char *err, size_t errsize) {
    char **names;
    size_t n;
    if (peft_list_tasks(dir, &names, &n, err, errsize) < 0) return -1;
    s->task_names = names;
    s->tasks = calloc(n, sizeof *s->tasks);
    if (!s->tasks) {
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        s->task_names = NULL;
        return cv_fail(err, errsize, "out of memory");
    }
    s->n_tasks = n; /* state_free frees them all from here on */
    if (n > CV_MAX_TASKS) return cv_fail(err, errsize, "%s holds %zu tasks (%s, %s, ...); a file holds at most %d", dir, n, names[0], names[1], CV_MAX_TASKS);
    for (size_t i = 0; i < n; i++) {
        char sub[768];
        if (peft_load_task(dir, names[i], &s->tasks[i], sub, sizeof sub) < 0) return cv_fail(err, errsize, "task %s: %s", names[i], sub);
    }
    for (size_t i = 1; i < n; i++)
        for (int flip = 0; flip < 2; flip++) {
            const size_t x = flip ? i : 0, y = flip ? 0 : i;
            for (size_t m = 0; m < s->tasks[x].n_modules; m++)
                if (!peft_find_module(&s->tasks[y], s->tasks[x].modules[m].module))
                    return cv_fail(err, errsize, "%s: task %s has a LoRA on %s but task %s has none (every task must adapt the same modules)", dir, names[x],
                                   s->tasks[x].modules[m].module, names[y]);
        }
    return 0;
}

int convert_model(const convert_options *opt, char *err, size_t errsize) {
    conv_state s;
    memset(&s, 0, sizeof s);
    s.opt = opt;
    abc_writer *w = NULL;
    char *tok_path = cv_path_join(opt->hf_dir, "tokenizer.json");
    char *auto_dir = NULL;
    int rc = -1;
    if (!tok_path) { cv_fail(err, errsize, "out of memory"); goto done; }
    if (!cv_known_preset(opt->preset, err, errsize)) goto done;
    if (config_load(opt->hf_dir, &s.cfg, err, errsize) < 0) goto done;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].arch == s.cfg.arch) s.family = &families[i];
    const cv_family *f = s.family;
    if (!f) { cv_fail(err, errsize, "no converter for this architecture"); goto done; }
    if (!has_preset(f, opt->preset)) { cv_fail(err, errsize, f->wrong_preset, opt->hf_dir); goto done; }
    if (!f->task_adapters && (opt->n_task_adapters || opt->task_adapters_dir)) { cv_fail(err, errsize, "--task-adapter(s) is not supported for %s (merge LoRA adapters with --merge-adapter)", family_name(f)); goto done; }
    if (opt->n_task_adapters && opt->task_adapters_dir) { cv_fail(err, errsize, "give the task adapters with --task-adapter NAME=DIR (a folder per task) or --task-adapters DIR (one folder holding every task), not both"); goto done; }
    if (opt->query_adapter && (opt->n_task_adapters || opt->task_adapters_dir)) { cv_fail(err, errsize, "a file takes a --query-adapter or --task-adapter adapters, not both"); goto done; }
    if (!f->query_adapter && opt->query_adapter) { cv_fail(err, errsize, "--query-adapter is not supported for %s (merge LoRA adapters with --merge-adapter)", family_name(f)); goto done; }
    if (!f->num_crops && opt->num_crops) { cv_fail(err, errsize, "--num-crops applies to phi3_v checkpoints only"); goto done; }
    if (!cv_file_exists(tok_path)) { cv_fail(err, errsize, "%s not found", tok_path); goto done; }
    if (f->prepare && f->prepare(&s, tok_path, err, errsize) < 0) goto done;
    if (st_open_checkpoint(&s.base, opt->hf_dir, err, errsize) < 0 || normalize_base_names(&s.base, f, err, errsize) < 0) goto done;

    s.merges = calloc(opt->n_merge_adapters + 1, sizeof *s.merges);
    if (!s.merges) { cv_fail(err, errsize, "out of memory"); goto done; }
    for (size_t i = 0; i < opt->n_merge_adapters; i++) {
        if (peft_load(opt->merge_adapters[i], &s.merges[i], err, errsize) < 0) { s.n_merges = i + 1; goto done; }
        s.n_merges = i + 1;
        if (f->canonical_adapter && f->canonical_adapter(&s.merges[i], err, errsize) < 0) goto done;
    }
    if (opt->query_adapter) {
        s.has_query = 1;
        if (peft_load(opt->query_adapter, &s.query, err, errsize) < 0) goto done;
    }
    /* jina-embeddings-v4's repository ships its task adapters as HF_DIR/adapters/ */
    const char *tasks_dir = opt->task_adapters_dir;
    if (!tasks_dir && !opt->n_task_adapters && !opt->query_adapter && strcmp(opt->preset, "jina-v4") == 0) {
        auto_dir = cv_path_join(opt->hf_dir, "adapters");
        char *auto_cfg = auto_dir ? cv_path_join(auto_dir, "adapter_config.json") : NULL;
        if (!auto_cfg) { cv_fail(err, errsize, "out of memory"); goto done; }
        if (cv_file_exists(auto_cfg)) tasks_dir = auto_dir;
        free(auto_cfg);
        if (tasks_dir && !opt->quiet) fprintf(stderr, "abc-convert: note: task adapters from %s\n", tasks_dir);
    }
    if (opt->n_task_adapters) {
        s.tasks = calloc(opt->n_task_adapters, sizeof *s.tasks);
        s.task_names = calloc(opt->n_task_adapters, sizeof *s.task_names);
        if (!s.tasks || !s.task_names) { cv_fail(err, errsize, "out of memory"); goto done; }
    }
    for (size_t i = 0; i < opt->n_task_adapters; i++) {
        const char *spec = opt->task_adapters[i], *eq = strchr(spec, '=');
        size_t len = eq ? (size_t)(eq - spec) : 0;
        int ok = eq && peft_task_name_ok(spec, len) && eq[1];
        for (size_t k = 0; ok && k < s.n_tasks; k++) ok = strlen(s.task_names[k]) != len || memcmp(s.task_names[k], spec, len) != 0;
        if (!ok) { cv_fail(err, errsize, "--task-adapter \"%s\": give NAME=DIR with a new NAME of letters, digits, '-' or '_'", spec); goto done; }
        if (s.n_tasks == CV_MAX_TASKS) { cv_fail(err, errsize, "at most %d --task-adapter adapters", CV_MAX_TASKS); goto done; }
        if (!(s.task_names[s.n_tasks] = malloc(len + 1))) { cv_fail(err, errsize, "out of memory"); goto done; }
        memcpy(s.task_names[s.n_tasks], spec, len);
        s.task_names[s.n_tasks][len] = 0;
        s.n_tasks++;
        if (peft_load(eq + 1, &s.tasks[i], err, errsize) < 0) goto done;
    }
    if (tasks_dir && load_multi_task(&s, tasks_dir, err, errsize) < 0) goto done;
    if (strcmp(opt->preset, "jina-v4") == 0 && !s.n_tasks) {
        cv_fail(err, errsize, "preset jina-v4 needs its task adapters: --task-adapters DIR (jina's adapters/ folder, used by itself when it is in %s) or --task-adapter retrieval=DIR ...", opt->hf_dir);
        goto done;
    }
    if (resolve_head(&s, err, errsize) < 0 || resolve_multi_vector(&s, err, errsize) < 0) goto done;
    if (f->expected(&s, &s.exp) < 0) { cv_fail(err, errsize, "out of memory"); goto done; }
    if (check_unused_base(&s, err, errsize) < 0) goto done;
    for (size_t i = 0; i < s.n_merges; i++)
        if (check_merge_adapter(&s, &s.merges[i], err, errsize) < 0) goto done;
    if (s.has_query && check_runtime_adapter(&s, &s.query, "query adapter", err, errsize) < 0) goto done;
    for (size_t i = 0; i < s.n_tasks; i++) {
        char what[96];
        snprintf(what, sizeof what, "task adapter %s", s.task_names[i]);
        if (check_runtime_adapter(&s, &s.tasks[i], what, err, errsize) < 0) goto done;
    }

    w = writer_new();
    if (!w) { cv_fail(err, errsize, "out of memory"); goto done; }
    if (f->metadata(&s, w, err, errsize) < 0) goto done;
    if (queue_model_tensors(&s, w, err, errsize) < 0) goto done;
    if (s.has_query && queue_runtime_adapter(&s, w, &s.query, "query_adapter.", err, errsize) < 0) goto done;
    for (size_t i = 0; i < s.n_tasks; i++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "task_adapter.%s.", s.task_names[i]);
        if (queue_runtime_adapter(&s, w, &s.tasks[i], prefix, err, errsize) < 0) goto done;
    }
    char terr[512] = "";
    if (tokenizer_convert(tok_path, w, terr, sizeof terr) != 0) { cv_fail(err, errsize, "%s: %s", tok_path, terr); goto done; }
    writer_set_threads(w, opt->threads > 0 ? opt->threads : cv_online_cpus());
    progress_state ps = { now_seconds(), 0, 0 };
    if (opt->progress) writer_set_progress(w, show_progress, &ps);
    int wrc = writer_write(w, opt->out_path, err, errsize);
    if (ps.drawn) fputc('\n', stderr);
    if (wrc < 0) goto done;
    rc = 0;
done:
    writer_free(w); /* before the state: the fill contexts point into it */
    state_free(&s);
    free(tok_path);
    free(auto_dir);
    return rc;
}
