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

static int check_architecture(const cfg_reader *r) {
    const json_value *mt = json_get(r->root, "model_type");
    const json_value *arch = json_get(r->root, "architectures");
    if (mt && mt->type == JSON_STRING) {
        if (strcmp(mt->string, "qwen2_vl") != 0)
            return cv_fail(r->err, r->errsize, "%s: unsupported architecture: model_type \"%.60s\" (supported: qwen2_vl)", r->path, mt->string);
        return 0;
    }
    if (arch && arch->type == JSON_ARRAY && arch->n_items > 0 && arch->items[0].type == JSON_STRING) {
        if (strcmp(arch->items[0].string, "Qwen2VLForConditionalGeneration") != 0)
            return cv_fail(r->err, r->errsize, "%s: unsupported architecture \"%.60s\" (supported: Qwen2VLForConditionalGeneration)", r->path,
                           arch->items[0].string);
        return 0;
    }
    return cv_fail(r->err, r->errsize, "%s: neither \"model_type\" nor \"architectures\" says which model this is", r->path);
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
    return read_rope(r, c);
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
    for (int k = 0; k < 2; k++) {
        const json_value *a = k ? std : mean;
        double *dst = k ? c->image_std : c->image_mean;
        const char *name = k ? "image_std" : "image_mean";
        if (!a || a->type != JSON_ARRAY || a->n_items != 3) { cv_fail(err, errsize, "%s: \"%s\" must be an array of 3 numbers", path, name); goto done; }
        for (int i = 0; i < 3; i++) {
            if (a->items[i].type != JSON_NUMBER || !isfinite(a->items[i].number) || (k && !(a->items[i].number > 0))) {
                cv_fail(err, errsize, "%s: \"%s\"[%d] is not a valid number", path, name, i);
                goto done;
            }
            dst[i] = a->items[i].number;
        }
    }
    rc = 0;
done:
    json_free(root);
    free(path);
    return rc;
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
    if (check_architecture(&r) < 0) goto done;
    r.text = json_get(root, "text_config");
    if (r.text && r.text->type != JSON_OBJECT) r.text = NULL;
    r.vision = json_get(root, "vision_config");
    if (!r.vision || r.vision->type != JSON_OBJECT) { cv_fail(err, errsize, "%s: \"vision_config\" is missing", path); goto done; }
    if (read_text(&r, c) < 0 || read_vision(&r, c) < 0) goto done;
    if (read_token_id(&r, "image_token_id", &c->image_token) < 0 ||
        read_token_id(&r, "vision_start_token_id", &c->vision_start_token) < 0 ||
        read_token_id(&r, "vision_end_token_id", &c->vision_end_token) < 0)
        goto done;
    rc = read_preprocessor(dir, c, err, errsize);
done:
    json_free(root);
    free(path);
    return rc;
}
