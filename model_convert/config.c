/* config.json and preprocessor_config.json of a Qwen2-VL checkpoint. Accepts the flat hub layout
 * (decoder fields at the top level) and the nested layout of newer transformers (`text_config`),
 * and both `rope_scaling` and `rope_parameters`. */
#include "convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *path;
    const json_value *root, *text, *vision;
    char *err;
    size_t errsize;
} cfg_reader;

/* Decoder fields live in text_config when it exists, at the top level otherwise (and some
 * writers duplicate them): look in text_config first. */
static const json_value *text_field(const cfg_reader *r, const char *key) {
    const json_value *v = r->text ? json_get(r->text, key) : NULL;
    if (!v || v->type == JSON_NULL) v = json_get(r->root, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static int req_int(const cfg_reader *r, const json_value *v, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    if (!v) return cv_fail(r->err, r->errsize, "%s: \"%s\" is missing", r->path, key);
    if (cv_json_int(v, lo, hi, out) < 0)
        return cv_fail(r->err, r->errsize, "%s: \"%s\" must be an integer in [%lld, %lld]", r->path, key, (long long)lo, (long long)hi);
    return 0;
}

static int opt_int(const cfg_reader *r, const json_value *v, const char *key, int64_t lo, int64_t hi, int64_t dflt, int64_t *out) {
    if (!v) { *out = dflt; return 0; }
    return req_int(r, v, key, lo, hi, out);
}

static int req_positive(const cfg_reader *r, const json_value *v, const char *key, double *out) {
    if (!v) return cv_fail(r->err, r->errsize, "%s: \"%s\" is missing", r->path, key);
    if (v->type != JSON_NUMBER || !(v->number > 0) || !isfinite(v->number))
        return cv_fail(r->err, r->errsize, "%s: \"%s\" must be a positive number", r->path, key);
    *out = v->number;
    return 0;
}

static int check_string(const cfg_reader *r, const json_value *v, const char *key, const char *want) {
    if (v && (v->type != JSON_STRING || strcmp(v->string, want) != 0))
        return cv_fail(r->err, r->errsize, "%s: %s \"%.40s\" is not supported (the runtime implements \"%s\")", r->path, key,
                       v->type == JSON_STRING ? v->string : "?", want);
    return 0;
}

static int read_rope(const cfg_reader *r, model_config *c) {
    const json_value *rs = text_field(r, "rope_scaling");
    if (!rs) rs = text_field(r, "rope_parameters");
    if (rs && rs->type != JSON_OBJECT) return cv_fail(r->err, r->errsize, "%s: rope_scaling is not an object", r->path);
    const json_value *ty = rs ? json_get(rs, "rope_type") : NULL;
    if (!ty || ty->type != JSON_STRING) ty = rs ? json_get(rs, "type") : NULL;
    if (ty && ty->type == JSON_STRING && strcmp(ty->string, "mrope") != 0 && strcmp(ty->string, "default") != 0)
        return cv_fail(r->err, r->errsize, "%s: rope type \"%.40s\" is not supported (mrope/default only)", r->path, ty->string);
    const json_value *sec = rs ? json_get(rs, "mrope_section") : NULL;
    if (!sec) return cv_fail(r->err, r->errsize, "%s: rope_scaling.mrope_section is missing (Qwen2-VL needs multimodal RoPE)", r->path);
    if (sec->type != JSON_ARRAY || sec->n_items != 3) return cv_fail(r->err, r->errsize, "%s: mrope_section must have 3 entries", r->path);
    int64_t sum = 0;
    for (int i = 0; i < 3; i++) {
        if (req_int(r, &sec->items[i], "mrope_section[i]", 0, 1 << 16, &c->mrope_section[i]) < 0) return -1;
        sum += c->mrope_section[i];
    }
    if (sum * 2 != c->head_dim)
        return cv_fail(r->err, r->errsize, "%s: mrope_section %lld+%lld+%lld must add up to head_dim/2 = %lld", r->path,
                       (long long)c->mrope_section[0], (long long)c->mrope_section[1], (long long)c->mrope_section[2], (long long)(c->head_dim / 2));
    const json_value *theta = text_field(r, "rope_theta");
    if (!theta && rs) theta = json_get(rs, "rope_theta");
    return req_positive(r, theta, "rope_theta", &c->rope_theta);
}

static int read_text(const cfg_reader *r, model_config *c) {
    const int64_t big = INT64_C(1) << 24;
    if (req_int(r, text_field(r, "hidden_size"), "hidden_size", 1, big, &c->hidden) < 0 ||
        req_int(r, text_field(r, "intermediate_size"), "intermediate_size", 1, big, &c->intermediate) < 0 ||
        req_int(r, text_field(r, "num_hidden_layers"), "num_hidden_layers", 1, 4096, &c->layers) < 0 ||
        req_int(r, text_field(r, "num_attention_heads"), "num_attention_heads", 1, 4096, &c->heads) < 0 ||
        opt_int(r, text_field(r, "num_key_value_heads"), "num_key_value_heads", 1, 4096, c->heads, &c->kv_heads) < 0 ||
        req_int(r, text_field(r, "vocab_size"), "vocab_size", 1, INT64_C(1) << 28, &c->vocab) < 0 ||
        req_positive(r, text_field(r, "rms_norm_eps"), "rms_norm_eps", &c->rms_eps) < 0)
        return -1;
    if (c->hidden % c->heads) return cv_fail(r->err, r->errsize, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", r->path, (long long)c->hidden, (long long)c->heads);
    c->head_dim = c->hidden / c->heads;
    int64_t hd;
    if (opt_int(r, text_field(r, "head_dim"), "head_dim", 1, big, c->head_dim, &hd) < 0) return -1;
    if (hd != c->head_dim) return cv_fail(r->err, r->errsize, "%s: head_dim %lld differs from hidden_size/num_attention_heads", r->path, (long long)hd);
    if (c->head_dim % 2) return cv_fail(r->err, r->errsize, "%s: odd head_dim %lld", r->path, (long long)c->head_dim);
    if (c->heads % c->kv_heads) return cv_fail(r->err, r->errsize, "%s: num_attention_heads is not a multiple of num_key_value_heads", r->path);
    if (check_string(r, text_field(r, "hidden_act"), "hidden_act", "silu") < 0) return -1;
    const json_value *sw = text_field(r, "use_sliding_window");
    if (sw && sw->type == JSON_BOOL && sw->boolean)
        return cv_fail(r->err, r->errsize, "%s: use_sliding_window=true is not supported", r->path);
    const json_value *tie = text_field(r, "tie_word_embeddings");
    c->tie_embeddings = tie && tie->type == JSON_BOOL && tie->boolean;
    return 0;
}

static int read_vision(const cfg_reader *r, model_config *c) {
    const json_value *v = r->vision;
    const int64_t big = INT64_C(1) << 24;
    const json_value *patch = json_get(v, "patch_size");
    if (!patch) patch = json_get(v, "spatial_patch_size");
    const json_value *inch = json_get(v, "in_chans");
    if (!inch) inch = json_get(v, "in_channels");
    double ratio;
    if (req_int(r, json_get(v, "depth"), "vision_config.depth", 1, 4096, &c->v_depth) < 0 ||
        req_int(r, json_get(v, "embed_dim"), "vision_config.embed_dim", 1, big, &c->v_embed) < 0 ||
        req_int(r, json_get(v, "num_heads"), "vision_config.num_heads", 1, 4096, &c->v_heads) < 0 ||
        req_positive(r, json_get(v, "mlp_ratio"), "vision_config.mlp_ratio", &ratio) < 0 ||
        req_int(r, patch, "vision_config.patch_size", 1, 1024, &c->v_patch) < 0 ||
        opt_int(r, json_get(v, "temporal_patch_size"), "vision_config.temporal_patch_size", 1, 64, 2, &c->v_temporal_patch) < 0 ||
        opt_int(r, json_get(v, "spatial_merge_size"), "vision_config.spatial_merge_size", 1, 64, 2, &c->v_merge) < 0 ||
        opt_int(r, inch, "vision_config.in_chans", 1, 64, 3, &c->v_in_channels) < 0 ||
        opt_int(r, json_get(v, "hidden_size"), "vision_config.hidden_size", 1, big, c->hidden, &c->v_out) < 0)
        return -1;
    /* transformers: mlp_hidden_dim = int(embed_dim * mlp_ratio) */
    c->v_mlp = (int64_t)((double)c->v_embed * ratio);
    if (c->v_mlp < 1) return cv_fail(r->err, r->errsize, "%s: vision MLP width is zero", r->path);
    if (c->v_embed % c->v_heads || (c->v_embed / c->v_heads) % 4)
        return cv_fail(r->err, r->errsize, "%s: vision head_dim (embed_dim/num_heads) must be a multiple of 4", r->path);
    if (c->v_out != c->hidden)
        return cv_fail(r->err, r->errsize, "%s: vision_config.hidden_size %lld differs from the language model's hidden_size %lld", r->path,
                       (long long)c->v_out, (long long)c->hidden);
    if (check_string(r, json_get(v, "hidden_act"), "vision_config.hidden_act", "quick_gelu") < 0) return -1;
    return 0;
}

static int read_token_id(const cfg_reader *r, const char *key, int64_t *out) {
    const json_value *v = json_get(r->root, key);
    if (!v && r->text) v = json_get(r->text, key);
    *out = -1;
    if (!v || v->type == JSON_NULL) return 0;
    return req_int(r, v, key, 0, INT32_MAX, out);
}

/* image_mean / image_std: an array of 3 finite numbers (std: positive). */
static int read_normalisation(const json_value *a, const char *name, int positive, double dst[3], const char *path,
                              char *err, size_t errsize) {
    if (!a || a->type != JSON_ARRAY || a->n_items != 3)
        return cv_fail(err, errsize, "%s: \"%s\" must be an array of 3 numbers", path, name);
    for (int i = 0; i < 3; i++) {
        if (a->items[i].type != JSON_NUMBER || !isfinite(a->items[i].number) || (positive && !(a->items[i].number > 0)))
            return cv_fail(err, errsize, "%s: \"%s\"[%d] is not a valid number", path, name, i);
        dst[i] = a->items[i].number;
    }
    return 0;
}

static int read_preprocessor(const char *dir, model_config *c, char *err, size_t errsize) {
    char *path = cv_path_join(dir, "preprocessor_config.json");
    if (!path) return cv_fail(err, errsize, "out of memory");
    json_value *root = cv_read_json(path, err, errsize);
    if (!root) { free(path); return -1; }
    cfg_reader r = { path, root, NULL, NULL, err, errsize };
    int rc = -1;
    const json_value *size = json_get(root, "size");
    const json_value *minp = json_get(root, "min_pixels"), *maxp = json_get(root, "max_pixels");
    if (!minp || minp->type == JSON_NULL) minp = json_get(size, "shortest_edge"); /* newer processors */
    if (!maxp || maxp->type == JSON_NULL) maxp = json_get(size, "longest_edge");
    const json_value *mean = json_get(root, "image_mean"), *std = json_get(root, "image_std");
    int64_t patch, tpatch, merge;
    if (root->type != JSON_OBJECT) { cv_fail(err, errsize, "%s: not a JSON object", path); goto done; }
    if (req_int(&r, minp, "min_pixels", 1, INT64_C(1) << 40, &c->min_pixels) < 0 ||
        req_int(&r, maxp, "max_pixels", 1, INT64_C(1) << 40, &c->max_pixels) < 0 ||
        opt_int(&r, json_get(root, "patch_size"), "patch_size", 1, 1024, c->v_patch, &patch) < 0 ||
        opt_int(&r, json_get(root, "temporal_patch_size"), "temporal_patch_size", 1, 64, c->v_temporal_patch, &tpatch) < 0 ||
        opt_int(&r, json_get(root, "merge_size"), "merge_size", 1, 64, c->v_merge, &merge) < 0)
        goto done;
    if (c->min_pixels > c->max_pixels) { cv_fail(err, errsize, "%s: min_pixels > max_pixels", path); goto done; }
    if (patch != c->v_patch || tpatch != c->v_temporal_patch || merge != c->v_merge) {
        cv_fail(err, errsize, "%s: patch_size/temporal_patch_size/merge_size (%lld/%lld/%lld) disagree with config.json (%lld/%lld/%lld)", path,
                (long long)patch, (long long)tpatch, (long long)merge, (long long)c->v_patch, (long long)c->v_temporal_patch, (long long)c->v_merge);
        goto done;
    }
    if (read_normalisation(mean, "image_mean", 0, c->image_mean, path, err, errsize) < 0 ||
        read_normalisation(std, "image_std", 1, c->image_std, path, err, errsize) < 0)
        goto done;
    rc = 0;
done:
    json_free(root);
    free(path);
    return rc;
}

/* ---- phi3_v (microsoft/Phi-3.5-vision-instruct) ---- */

/* A config string that must have one value, when present (absent = the modeling code's default). */
static int phi3_require_string(const cfg_reader *r, const json_value *obj, const char *key, const char *want) {
    const json_value *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_STRING || strcmp(v->string, want) != 0)
        return cv_fail(r->err, r->errsize, "%s: %s \"%.40s\" is not supported (the runtime implements \"%s\")", r->path, key,
                       v->type == JSON_STRING ? v->string : "?", want);
    return 0;
}

static int phi3_require_true(const cfg_reader *r, const json_value *obj, const char *where, const char *key) {
    const json_value *v = json_get(obj, key);
    if (!v || v->type != JSON_BOOL || !v->boolean)
        return cv_fail(r->err, r->errsize, "%s: %s.%s must be true (the runtime implements Phi-3.5-V's HD transform with learnable separators)", r->path, where, key);
    return 0;
}

/* short_factor / long_factor: head_dim/2 positive numbers each. */
static int phi3_read_factors(const cfg_reader *r, const json_value *rs, const char *key, int64_t n, double *dst) {
    const json_value *a = json_get(rs, key);
    if (!a || a->type != JSON_ARRAY)
        return cv_fail(r->err, r->errsize, "%s: rope_scaling.%s is missing (su/longrope needs head_dim/2 = %lld factors)", r->path, key, (long long)n);
    if ((int64_t)a->n_items != n)
        return cv_fail(r->err, r->errsize, "%s: rope_scaling.%s has %zu entries, but head_dim/2 = %lld", r->path, key, a->n_items, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        const json_value *v = &a->items[i];
        if (v->type != JSON_NUMBER || !(v->number > 0) || !isfinite(v->number))
            return cv_fail(r->err, r->errsize, "%s: rope_scaling.%s[%lld] is not a positive number", r->path, key, (long long)i);
        dst[i] = v->number;
    }
    return 0;
}

/* rope_scaling: null (plain RoPE) or type "su"/"longrope" with per-frequency factors. */
static int phi3_read_rope(const cfg_reader *r, model_config *c) {
    const json_value *theta = json_get(r->root, "rope_theta");
    c->rope_theta = 10000.0; /* Phi3Config's default */
    if (theta && theta->type != JSON_NULL && req_positive(r, theta, "rope_theta", &c->rope_theta) < 0) return -1;
    if (req_int(r, json_get(r->root, "max_position_embeddings"), "max_position_embeddings", 1, INT64_C(1) << 40, &c->max_position) < 0 ||
        opt_int(r, json_get(r->root, "original_max_position_embeddings"), "original_max_position_embeddings", 1, INT64_C(1) << 40, c->max_position,
                &c->original_max_position) < 0)
        return -1;
    const json_value *rs = json_get(r->root, "rope_scaling");
    if (!rs || rs->type == JSON_NULL) { c->rope_su = 0; return 0; }
    if (rs->type != JSON_OBJECT) return cv_fail(r->err, r->errsize, "%s: rope_scaling is not an object", r->path);
    const json_value *ty = json_get(rs, "type");
    if (!ty || ty->type != JSON_STRING) ty = json_get(rs, "rope_type");
    if (!ty || ty->type != JSON_STRING || (strcmp(ty->string, "su") != 0 && strcmp(ty->string, "longrope") != 0))
        return cv_fail(r->err, r->errsize, "%s: rope_scaling type \"%.40s\" is not supported (phi3_v: su or longrope)", r->path,
                       ty && ty->type == JSON_STRING ? ty->string : "?");
    const int64_t n = c->head_dim / 2;
    if (n > PHI3_MAX_ROPE_FACTORS) return cv_fail(r->err, r->errsize, "%s: head_dim %lld is too large", r->path, (long long)c->head_dim);
    if (!json_get(r->root, "original_max_position_embeddings"))
        return cv_fail(r->err, r->errsize, "%s: \"original_max_position_embeddings\" is missing (needed by su/longrope RoPE)", r->path);
    c->rope_su = 1;
    return phi3_read_factors(r, rs, "short_factor", n, c->rope_short) < 0 || phi3_read_factors(r, rs, "long_factor", n, c->rope_long) < 0 ? -1 : 0;
}

/* The CLIP tower. Phi-3.5-V's config names the OpenAI ViT-L/14-336 checkpoint instead of listing its
 * sizes (the modeling code hard-codes them); a config may list them in img_processor.tiny_clip_config
 * (the test fixtures) or img_processor.clip_config. */
static int phi3_read_clip(const cfg_reader *r, const json_value *ip, model_config *c) {
    if (phi3_require_string(r, ip, "name", "clip_vision_model") < 0 || phi3_require_string(r, ip, "type_feature", "patch") < 0) return -1;
    int64_t layer_idx;
    if (opt_int(r, json_get(ip, "layer_idx"), "img_processor.layer_idx", -4096, 4096, -2, &layer_idx) < 0) return -1;
    if (layer_idx != -2)
        return cv_fail(r->err, r->errsize, "%s: img_processor.layer_idx %lld is not supported (the runtime takes CLIP's hidden_states[-2])", r->path, (long long)layer_idx);
    const json_value *cc = json_get(ip, "tiny_clip_config");
    if (!cc || cc->type != JSON_OBJECT) cc = json_get(ip, "clip_config");
    if (cc && cc->type == JSON_OBJECT) {
        const int64_t big = INT64_C(1) << 20;
        int64_t channels;
        if (req_int(r, json_get(cc, "hidden_size"), "clip hidden_size", 1, big, &c->clip_hidden) < 0 ||
            req_int(r, json_get(cc, "intermediate_size"), "clip intermediate_size", 1, big, &c->clip_intermediate) < 0 ||
            req_int(r, json_get(cc, "num_hidden_layers"), "clip num_hidden_layers", 1, 4096, &c->clip_layers) < 0 ||
            req_int(r, json_get(cc, "num_attention_heads"), "clip num_attention_heads", 1, 4096, &c->clip_heads) < 0 ||
            opt_int(r, json_get(cc, "image_size"), "clip image_size", 1, 1 << 16, 336, &c->clip_image) < 0 ||
            opt_int(r, json_get(cc, "patch_size"), "clip patch_size", 1, 1 << 16, 14, &c->clip_patch) < 0 ||
            opt_int(r, json_get(cc, "num_channels"), "clip num_channels", 1, 64, 3, &channels) < 0)
            return -1;
        c->clip_eps = 1e-5;
        const json_value *eps = json_get(cc, "layer_norm_eps");
        if (eps && req_positive(r, eps, "clip layer_norm_eps", &c->clip_eps) < 0) return -1;
        if (phi3_require_string(r, cc, "hidden_act", "quick_gelu") < 0) return -1;
        if (channels != 3) return cv_fail(r->err, r->errsize, "%s: CLIP num_channels %lld is not supported (RGB only)", r->path, (long long)channels);
    } else {
        const json_value *mn = json_get(ip, "model_name");
        if (!mn || mn->type != JSON_STRING || strcmp(mn->string, "openai/clip-vit-large-patch14-336") != 0)
            return cv_fail(r->err, r->errsize, "%s: img_processor.model_name \"%.60s\" is not supported (openai/clip-vit-large-patch14-336, or sizes in img_processor.clip_config)",
                           r->path, mn && mn->type == JSON_STRING ? mn->string : "?");
        /* CLIP_VIT_LARGE_PATCH14_336_CONFIG of the Phi-3-V modeling code */
        c->clip_hidden = 1024;
        c->clip_intermediate = 4096;
        c->clip_layers = 24;
        c->clip_heads = 16;
        c->clip_image = 336;
        c->clip_patch = 14;
        c->clip_eps = 1e-5;
    }
    if (c->clip_hidden % c->clip_heads)
        return cv_fail(r->err, r->errsize, "%s: CLIP hidden_size %lld is not a multiple of its num_attention_heads %lld", r->path, (long long)c->clip_hidden,
                       (long long)c->clip_heads);
    if (c->clip_layers < 2)
        return cv_fail(r->err, r->errsize, "%s: CLIP needs at least 2 layers (its features are hidden_states[-2])", r->path);
    if (c->clip_image != 336 || c->clip_patch != 14)
        return cv_fail(r->err, r->errsize, "%s: CLIP image_size %lld / patch_size %lld are not supported (the HD transform works on 336x336 crops of 14x14 patches)",
                       r->path, (long long)c->clip_image, (long long)c->clip_patch);
    int64_t dim_out;
    if (opt_int(r, json_get(ip, "image_dim_out"), "img_processor.image_dim_out", 1, INT64_C(1) << 20, c->clip_hidden, &dim_out) < 0) return -1;
    if (dim_out != c->clip_hidden)
        return cv_fail(r->err, r->errsize, "%s: img_processor.image_dim_out %lld differs from the CLIP hidden size %lld", r->path, (long long)dim_out, (long long)c->clip_hidden);
    if (opt_int(r, json_get(ip, "num_img_tokens"), "img_processor.num_img_tokens", 1, 1 << 20, 144, &c->num_img_tokens) < 0) return -1;
    const int64_t grid = c->clip_image / c->clip_patch / 2; /* 2x2 patches merged per token */
    if (c->num_img_tokens != grid * grid)
        return cv_fail(r->err, r->errsize, "%s: img_processor.num_img_tokens %lld must be %lld ((336/14/2)^2)", r->path, (long long)c->num_img_tokens, (long long)(grid * grid));
    return 0;
}

static int phi3_read_embd_layer(const cfg_reader *r) {
    const json_value *e = json_get(r->root, "embd_layer");
    if (!e || e->type != JSON_OBJECT) return cv_fail(r->err, r->errsize, "%s: \"embd_layer\" is missing (a Phi-3-V config describes its image embedding there)", r->path);
    if (phi3_require_string(r, e, "embedding_cls", "image") < 0 || phi3_require_string(r, e, "hd_transform_order", "sub_glb") < 0 ||
        phi3_require_string(r, e, "projection_cls", "mlp") < 0 || phi3_require_true(r, e, "embd_layer", "use_hd_transform") < 0 ||
        phi3_require_true(r, e, "embd_layer", "with_learnable_separator") < 0)
        return -1;
    return 0;
}

/* preprocessor_config.json (Phi3VImageProcessor): num_crops, num_img_tokens, image_mean/std. Optional:
 * without it the processor's defaults (4 crops, OpenAI CLIP mean/std) apply. */
static int phi3_read_preprocessor(const char *dir, model_config *c, char *err, size_t errsize) {
    static const double clip_mean[3] = { 0.48145466, 0.4578275, 0.40821073 }, clip_std[3] = { 0.26862954, 0.26130258, 0.27577711 };
    memcpy(c->image_mean, clip_mean, sizeof clip_mean);
    memcpy(c->image_std, clip_std, sizeof clip_std);
    char *path = cv_path_join(dir, "preprocessor_config.json");
    if (!path) return cv_fail(err, errsize, "out of memory");
    if (!cv_file_exists(path)) { free(path); return 0; }
    json_value *root = cv_read_json(path, err, errsize);
    if (!root) { free(path); return -1; }
    cfg_reader r = { path, root, NULL, NULL, err, errsize };
    int rc = -1;
    int64_t tokens;
    if (root->type != JSON_OBJECT) { cv_fail(err, errsize, "%s: not a JSON object", path); goto done; }
    if (opt_int(&r, json_get(root, "num_crops"), "num_crops", 1, 4096, c->num_crops, &c->num_crops) < 0 ||
        opt_int(&r, json_get(root, "num_img_tokens"), "num_img_tokens", 1, 1 << 20, c->num_img_tokens, &tokens) < 0)
        goto done;
    if (tokens != c->num_img_tokens) {
        cv_fail(err, errsize, "%s: num_img_tokens %lld disagrees with config.json (%lld)", path, (long long)tokens, (long long)c->num_img_tokens);
        goto done;
    }
    /* absent or null: the CLIP defaults already in c */
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "image_std" : "image_mean";
        const json_value *a = json_get(root, name);
        if (!a || a->type == JSON_NULL) continue;
        if (read_normalisation(a, name, k == 1, k ? c->image_std : c->image_mean, path, err, errsize) < 0) goto done;
    }
    rc = 0;
done:
    json_free(root);
    free(path);
    return rc;
}

static int phi3_load(cfg_reader *r, const char *dir, model_config *c) {
    r->text = NULL;
    if (read_text(r, c) < 0 || phi3_read_rope(r, c) < 0) return -1;
    const json_value *ip = json_get(r->root, "img_processor");
    if (!ip || ip->type != JSON_OBJECT)
        return cv_fail(r->err, r->errsize, "%s: \"img_processor\" is missing (a Phi-3-V config describes its CLIP tower there)", r->path);
    if (phi3_read_clip(r, ip, c) < 0 || phi3_read_embd_layer(r) < 0) return -1;
    if (opt_int(r, json_get(r->root, "bos_token_id"), "bos_token_id", 0, INT32_MAX, 1, &c->bos_token) < 0) return -1;
    if (opt_int(r, json_get(r->root, "num_crops"), "num_crops", 1, 4096, 4, &c->num_crops) < 0) return -1;
    return phi3_read_preprocessor(dir, c, r->err, r->errsize);
}

/* jina-embeddings-v4 lists the dims its vector may be truncated to (its backbone is Qwen2.5-VL; the
 * Qwen2-VL reader takes the key too) */
static int read_matryoshka(const cfg_reader *r, model_config *c) {
    const json_value *dims = json_get(r->root, "matryoshka_dims");
    if (!dims || dims->type == JSON_NULL) return 0;
    if (dims->type != JSON_ARRAY || dims->n_items < 1 || dims->n_items > 32)
        return cv_fail(r->err, r->errsize, "%s: \"matryoshka_dims\" must be a list of 1 to 32 integers", r->path);
    for (size_t i = 0; i < dims->n_items; i++)
        if (req_int(r, &dims->items[i], "matryoshka_dims", 1, c->hidden, &c->matryoshka[c->n_matryoshka++]) < 0) return -1;
    return 0;
}

static int qwen2vl_load(cfg_reader *r, const char *dir, model_config *c) {
    r->text = json_get(r->root, "text_config");
    if (r->text && r->text->type != JSON_OBJECT) r->text = NULL;
    r->vision = json_get(r->root, "vision_config");
    if (!r->vision || r->vision->type != JSON_OBJECT) return cv_fail(r->err, r->errsize, "%s: \"vision_config\" is missing", r->path);
    if (read_text(r, c) < 0 || read_rope(r, c) < 0 || read_vision(r, c) < 0) return -1;
    if (read_token_id(r, "image_token_id", &c->image_token) < 0 || read_token_id(r, "vision_start_token_id", &c->vision_start_token) < 0 ||
        read_token_id(r, "vision_end_token_id", &c->vision_end_token) < 0 || read_token_id(r, "video_token_id", &c->video_token) < 0)
        return -1;
    if (read_matryoshka(r, c) < 0) return -1;
    return read_preprocessor(dir, c, r->err, r->errsize);
}

/* Qwen2.5-VL: the decoder as Qwen2-VL's; its vision_config names the ViT width hidden_size and the
 * decoder's out_hidden_size, and adds the window attention fields. */
static int read_vision25(const cfg_reader *r, model_config *c) {
    const json_value *v = r->vision;
    const int64_t big = INT64_C(1) << 24;
    const json_value *inch = json_get(v, "in_chans");
    if (!inch) inch = json_get(v, "in_channels");
    if (req_int(r, json_get(v, "depth"), "vision_config.depth", 1, 4096, &c->v_depth) < 0 ||
        req_int(r, json_get(v, "hidden_size"), "vision_config.hidden_size", 1, big, &c->v_embed) < 0 ||
        req_int(r, json_get(v, "intermediate_size"), "vision_config.intermediate_size", 1, big, &c->v_mlp) < 0 ||
        req_int(r, json_get(v, "num_heads"), "vision_config.num_heads", 1, 4096, &c->v_heads) < 0 ||
        req_int(r, json_get(v, "patch_size"), "vision_config.patch_size", 1, 1024, &c->v_patch) < 0 ||
        opt_int(r, json_get(v, "temporal_patch_size"), "vision_config.temporal_patch_size", 1, 64, 2, &c->v_temporal_patch) < 0 ||
        opt_int(r, json_get(v, "spatial_merge_size"), "vision_config.spatial_merge_size", 1, 64, 2, &c->v_merge) < 0 ||
        opt_int(r, inch, "vision_config.in_chans", 1, 64, 3, &c->v_in_channels) < 0 ||
        req_int(r, json_get(v, "out_hidden_size"), "vision_config.out_hidden_size", 1, big, &c->v_out) < 0 ||
        req_int(r, json_get(v, "window_size"), "vision_config.window_size", 1, 1 << 20, &c->v_window) < 0)
        return -1;
    if (c->v_embed % c->v_heads || (c->v_embed / c->v_heads) % 4)
        return cv_fail(r->err, r->errsize, "%s: vision head_dim (hidden_size/num_heads) must be a multiple of 4", r->path);
    if (c->v_out != c->hidden)
        return cv_fail(r->err, r->errsize, "%s: vision_config.out_hidden_size %lld differs from the language model's hidden_size %lld", r->path,
                       (long long)c->v_out, (long long)c->hidden);
    if (c->v_window < c->v_patch * c->v_merge)
        return cv_fail(r->err, r->errsize, "%s: vision_config.window_size %lld is smaller than one merged patch", r->path, (long long)c->v_window);
    if (check_string(r, json_get(v, "hidden_act"), "vision_config.hidden_act", "silu") < 0) return -1;
    const json_value *full = json_get(v, "fullatt_block_indexes");
    if (!full || full->type != JSON_ARRAY || full->n_items > QWEN25_MAX_FULLATT)
        return cv_fail(r->err, r->errsize, "%s: vision_config.fullatt_block_indexes must be an array of block indexes", r->path);
    c->n_fullatt = (int64_t)full->n_items;
    for (size_t i = 0; i < full->n_items; i++)
        if (req_int(r, &full->items[i], "vision_config.fullatt_block_indexes[i]", 0, c->v_depth - 1, &c->fullatt[i]) < 0) return -1;
    return 0;
}

static int qwen25vl_load(cfg_reader *r, const char *dir, model_config *c) {
    r->text = json_get(r->root, "text_config");
    if (r->text && r->text->type != JSON_OBJECT) r->text = NULL;
    r->vision = json_get(r->root, "vision_config");
    if (!r->vision || r->vision->type != JSON_OBJECT) return cv_fail(r->err, r->errsize, "%s: \"vision_config\" is missing", r->path);
    if (read_text(r, c) < 0 || read_rope(r, c) < 0 || read_vision25(r, c) < 0) return -1;
    if (read_token_id(r, "image_token_id", &c->image_token) < 0 || read_token_id(r, "vision_start_token_id", &c->vision_start_token) < 0 ||
        read_token_id(r, "vision_end_token_id", &c->vision_end_token) < 0 || read_token_id(r, "video_token_id", &c->video_token) < 0)
        return -1;
    if (read_matryoshka(r, c) < 0) return -1;
    return read_preprocessor(dir, c, r->err, r->errsize);
}

/* The families config.json can name (by model_type, else by architectures[0]) and their readers;
 * convert.c's families[] says how each is converted. */
static const struct {
    model_arch arch;
    const char *model_type, *hf_class;
    int (*load)(cfg_reader *r, const char *dir, model_config *c);
} config_families[] = {
    { ARCH_QWEN2_VL, "qwen2_vl", "Qwen2VLForConditionalGeneration", qwen2vl_load },
    { ARCH_PHI3_V, "phi3_v", "Phi3VForCausalLM", phi3_load },
    { ARCH_QWEN2_5_VL, "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", qwen25vl_load },
};
#define N_CONFIG_FAMILIES (sizeof config_families / sizeof config_families[0])

const char *config_arch_name(model_arch arch) {
    for (size_t i = 0; i < N_CONFIG_FAMILIES; i++)
        if (config_families[i].arch == arch) return config_families[i].model_type;
    return "?";
}

/* Which family this is: model_type first, else architectures[0]; the error lists what is supported. */
static int find_family(const cfg_reader *r, size_t *family) {
    const json_value *mt = json_get(r->root, "model_type");
    const json_value *archs = json_get(r->root, "architectures");
    const char *name = NULL;
    int by_type = mt && mt->type == JSON_STRING;
    if (by_type) name = mt->string;
    else if (archs && archs->type == JSON_ARRAY && archs->n_items > 0 && archs->items[0].type == JSON_STRING) name = archs->items[0].string;
    else return cv_fail(r->err, r->errsize, "%s: neither \"model_type\" nor \"architectures\" says which model this is", r->path);
    char supported[256];
    size_t n = 0;
    for (size_t i = 0; i < N_CONFIG_FAMILIES; i++) {
        const char *known = by_type ? config_families[i].model_type : config_families[i].hf_class;
        if (strcmp(name, known) == 0) { *family = i; return 0; }
        if (n < sizeof supported) n += (size_t)snprintf(supported + n, sizeof supported - n, "%s%s", i ? ", " : "", known);
    }
    return cv_fail(r->err, r->errsize, by_type ? "%s: unsupported architecture: model_type \"%.60s\" (supported: %s)" : "%s: unsupported architecture \"%.60s\" (supported: %s)",
                   r->path, name, supported);
}

int config_load(const char *dir, model_config *c, char *err, size_t errsize) {
    memset(c, 0, sizeof *c);
    char *path = cv_path_join(dir, "config.json");
    if (!path) return cv_fail(err, errsize, "out of memory");
    json_value *root = cv_read_json(path, err, errsize);
    if (!root) { free(path); return -1; }
    cfg_reader r = { path, root, NULL, NULL, err, errsize };
    int rc = -1;
    if (root->type != JSON_OBJECT) { cv_fail(err, errsize, "%s: not a JSON object", path); goto done; }
    size_t family = 0;
    if (find_family(&r, &family) < 0) goto done;
    c->arch = config_families[family].arch;
    rc = config_families[family].load(&r, dir, c);
done:
    json_free(root);
    free(path);
    return rc;
}
