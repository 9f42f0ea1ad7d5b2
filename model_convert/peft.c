/* PEFT adapters: adapter_config.json + adapter_model.safetensors. LoRA and DoRA modules are
 * merged with peft's own operation order in float32 (tuners/lora/layer.py `merge` and
 * `get_delta_weight`, tuners/lora/dora.py `get_weight_norm`); modules_to_save and other full
 * parameters are handed to the converter, which decides whether they replace or add tensors. */
#include "convert.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEFT_PREFIX "base_model.model."

typedef struct {
    const char *dir;
    const json_value *cfg;
    int64_t r;
    double alpha;
    int rslora;
    char *err;
    size_t errsize;
} adapter_cfg;

static int has_suffix(const char *s, const char *suffix, size_t *stem_len) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a <= b || strcmp(s + a - b, suffix) != 0) return 0;
    *stem_len = a - b;
    return 1;
}

static int json_true(const json_value *v) { return v && v->type == JSON_BOOL && v->boolean; }
static int json_present(const json_value *v) {
    if (!v || v->type == JSON_NULL) return 0;
    if ((v->type == JSON_ARRAY || v->type == JSON_OBJECT) && v->n_items == 0) return 0;
    return 1;
}

/* peft's pattern keys are regular expressions matched against the module path as `(.*\.)?KEY$`;
 * only literal dotted names occur in practice, which is what this accepts. */
static int pattern_matches(const char *pattern, const char *module) {
    size_t p = strlen(pattern), m = strlen(module);
    if (p > m || strcmp(module + m - p, pattern) != 0) return 0;
    return p == m || module[m - p - 1] == '.';
}

static int literal_pattern(const char *s) {
    for (; *s; s++)
        if (strchr("*+?()[]{}|^$\\", *s)) return 0;
    return 1;
}

/* rank_pattern / alpha_pattern lookup: the first matching key wins, as in peft. */
static int pattern_lookup(const adapter_cfg *c, const char *key, const char *module, double *value) {
    const json_value *pat = json_get(c->cfg, key);
    if (!pat || pat->type == JSON_NULL) return 0;
    if (pat->type != JSON_OBJECT) return cv_fail(c->err, c->errsize, "%s: \"%s\" is not an object", c->dir, key);
    for (size_t i = 0; i < pat->n_items; i++) {
        if (!literal_pattern(pat->keys[i]))
            return cv_fail(c->err, c->errsize, "%s: %s key \"%.80s\" is a regular expression; only literal module names are supported", c->dir, key, pat->keys[i]);
        if (pattern_matches(pat->keys[i], module)) {
            if (pat->items[i].type != JSON_NUMBER || !(pat->items[i].number > 0))
                return cv_fail(c->err, c->errsize, "%s: %s[\"%s\"] is not a positive number", c->dir, key, pat->keys[i]);
            *value = pat->items[i].number;
            return 1;
        }
    }
    return 0;
}

static int read_config(const char *dir, json_value *cfg, adapter_cfg *c, int *dora, char *err, size_t errsize) {
    c->dir = dir;
    c->cfg = cfg;
    c->err = err;
    c->errsize = errsize;
    if (cfg->type != JSON_OBJECT) return cv_fail(err, errsize, "%s: adapter_config.json is not an object", dir);
    const json_value *type = json_get(cfg, "peft_type");
    if (!type || type->type != JSON_STRING) return cv_fail(err, errsize, "%s: adapter_config.json has no \"peft_type\"", dir);
    if (strcmp(type->string, "LORA") != 0)
        return cv_fail(err, errsize, "%s: unsupported peft_type \"%.40s\" (only LORA, with or without DoRA)", dir, type->string);
    if (cv_json_int(json_get(cfg, "r"), 1, 1 << 20, &c->r) < 0) return cv_fail(err, errsize, "%s: \"r\" must be a positive integer", dir);
    const json_value *alpha = json_get(cfg, "lora_alpha");
    if (!alpha || alpha->type != JSON_NUMBER || !(alpha->number > 0) || !isfinite(alpha->number))
        return cv_fail(err, errsize, "%s: \"lora_alpha\" must be a positive number", dir);
    c->alpha = alpha->number;
    c->rslora = json_true(json_get(cfg, "use_rslora"));
    *dora = json_true(json_get(cfg, "use_dora"));
    if (json_true(json_get(cfg, "fan_in_fan_out"))) return cv_fail(err, errsize, "%s: fan_in_fan_out=true is not supported (Conv1D layers)", dir);
    if (json_true(json_get(cfg, "lora_bias"))) return cv_fail(err, errsize, "%s: lora_bias=true is not supported", dir);
    if (json_present(json_get(cfg, "layer_replication"))) return cv_fail(err, errsize, "%s: layer_replication is not supported", dir);
    if (json_present(json_get(cfg, "target_parameters"))) return cv_fail(err, errsize, "%s: target_parameters (LoRA on raw parameters) is not supported", dir);
    return 0;
}

/* Maps a saved key (without base_model.model.) to its module and role. */
enum { KEY_LORA_A, KEY_LORA_B, KEY_MAGNITUDE, KEY_PARAM, KEY_SKIP };

static int classify_key(const char *key, size_t *stem_len) {
    static const struct { const char *suffix; int kind; } lora_suffixes[] = {
        { ".lora_A.weight", KEY_LORA_A }, { ".lora_B.weight", KEY_LORA_B },
        { ".lora_A.default.weight", KEY_LORA_A }, { ".lora_B.default.weight", KEY_LORA_B },
        { ".lora_magnitude_vector", KEY_MAGNITUDE }, { ".lora_magnitude_vector.weight", KEY_MAGNITUDE },
        { ".lora_magnitude_vector.default.weight", KEY_MAGNITUDE }, { ".lora_magnitude_vector.default", KEY_MAGNITUDE },
    };
    for (size_t i = 0; i < sizeof lora_suffixes / sizeof lora_suffixes[0]; i++)
        if (has_suffix(key, lora_suffixes[i].suffix, stem_len)) return lora_suffixes[i].kind;
    if (strstr(key, ".original_module.")) return KEY_SKIP; /* the frozen copy kept beside modules_to_save */
    return KEY_PARAM;
}

/* A multi-task adapter's LoRA key (jina-embeddings-v4's release): <module>.lora_A.<task>.weight, or
 * <module>.lora_A.default.<task>.weight as newer peft saves it (it drops the adapter name only before
 * the last part). Returns KEY_LORA_A / KEY_LORA_B with the stem and the task, or KEY_PARAM for any
 * other key; a LoRA key without a task part (<module>.lora_A.weight) gives the task "" of length 0. */
static int task_key(const char *key, size_t *stem_len, const char **task, size_t *task_len) {
    size_t len = strlen(key);
    if (len < 7 || strcmp(key + len - 7, ".weight") != 0) return KEY_PARAM;
    const char *at = NULL;
    int kind = KEY_PARAM;
    for (const char *p = key; (p = strstr(p, ".lora_")) != NULL; p++)
        if ((p[6] == 'A' || p[6] == 'B') && p[7] == '.') { at = p; kind = p[6] == 'A' ? KEY_LORA_A : KEY_LORA_B; }
    if (!at) return KEY_PARAM;
    *stem_len = (size_t)(at - key);
    const char *t = at + 8, *end = key + len - 7;
    if (t > end) t = end; /* <module>.lora_A.weight: no task part */
    if ((size_t)(end - t) > 8 && strncmp(t, "default.", 8) == 0) t += 8;
    *task = t;
    *task_len = (size_t)(end - t);
    return kind;
}

int peft_task_name_ok(const char *name, size_t len) {
    if (len == 0 || len > PEFT_MAX_TASK_NAME) return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_') return 0;
    return 1;
}

/* name[0..len) for a message: at most 48 bytes, other than printable ASCII as \xNN. */
static void show_name(const char *name, size_t len, char *out, size_t size) {
    size_t n = 0;
    for (size_t i = 0; i < len && i < 48 && n + 5 < size; i++) {
        unsigned char c = (unsigned char)name[i];
        n += (size_t)snprintf(out + n, size - n, c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? "%c" : "\\x%02x", c);
    }
    if (len > 48 && n + 4 < size) n += (size_t)snprintf(out + n, size - n, "...");
    out[n < size ? n : size - 1] = '\0';
}

/* "mlp_head.modules_to_save.default.linear_layer1.weight" -> "mlp_head.linear_layer1.weight" */
static char *strip_modules_to_save(const char *key) {
    const char *m = strstr(key, ".modules_to_save.");
    if (!m) return cv_strdup(key);
    const char *adapter = m + strlen(".modules_to_save.");
    const char *rest = strchr(adapter, '.');
    if (!rest) return cv_strdup(key);
    size_t a = (size_t)(m - key), b = strlen(rest);
    char *out = malloc(a + b + 1);
    if (!out) return NULL;
    memcpy(out, key, a);
    memcpy(out + a, rest, b + 1);
    return out;
}

static lora_module *get_module(peft_adapter *a, const char *raw_module, size_t len, char *err, size_t errsize) {
    char *raw = malloc(len + 1);
    if (!raw) { cv_fail(err, errsize, "out of memory"); return NULL; }
    memcpy(raw, raw_module, len);
    raw[len] = '\0';
    char *name = cv_normalize_name(raw);
    free(raw);
    if (!name) { cv_fail(err, errsize, "out of memory"); return NULL; }
    for (size_t i = 0; i < a->n_modules; i++)
        if (strcmp(a->modules[i].module, name) == 0) { free(name); return &a->modules[i]; }
    lora_module *mods = realloc(a->modules, (a->n_modules + 1) * sizeof *mods);
    if (!mods) { free(name); cv_fail(err, errsize, "out of memory"); return NULL; }
    a->modules = mods;
    lora_module *m = &a->modules[a->n_modules++];
    memset(m, 0, sizeof *m);
    m->module = name;
    return m;
}

static int add_param(peft_adapter *a, const char *key, const st_tensor *t, char *err, size_t errsize) {
    char *plain = strip_modules_to_save(key);
    char *name = plain ? cv_normalize_name(plain) : NULL;
    free(plain);
    if (!name) return cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; i < a->n_params; i++)
        if (strcmp(a->params[i].name, name) == 0) {
            cv_fail(err, errsize, "%s: parameter %s is stored twice", a->dir, name);
            free(name);
            return -1;
        }
    adapter_param *p = realloc(a->params, (a->n_params + 1) * sizeof *p);
    if (!p) { free(name); return cv_fail(err, errsize, "out of memory"); }
    a->params = p;
    a->params[a->n_params++] = (adapter_param){ name, t };
    return 0;
}

static int check_module(const peft_adapter *a, const adapter_cfg *c, lora_module *m, const char *raw_module, char *err, size_t errsize) {
    if (!m->A || !m->B) return cv_fail(err, errsize, "%s: module %s has lora_%s but no lora_%s", a->dir, m->module, m->A ? "A" : "B", m->A ? "B" : "A");
    if (a->dora && !m->magnitude) return cv_fail(err, errsize, "%s: DoRA adapter without lora_magnitude_vector for %s", a->dir, m->module);
    if (!a->dora && m->magnitude) return cv_fail(err, errsize, "%s: %s has a lora_magnitude_vector but use_dora is false", a->dir, m->module);
    if (m->A->ndim != 2 || m->B->ndim != 2) return cv_fail(err, errsize, "%s: %s: lora_A/lora_B must be 2-D (LoRA on convolutions is not supported)", a->dir, m->module);
    double r = (double)c->r, alpha = c->alpha;
    int found = pattern_lookup(c, "rank_pattern", raw_module, &r);
    if (found < 0 || pattern_lookup(c, "alpha_pattern", raw_module, &alpha) < 0) return -1;
    if (r != floor(r)) return cv_fail(err, errsize, "%s: rank for %s is not an integer", a->dir, m->module);
    m->rank = (int64_t)r;
    if (m->A->shape[0] != m->rank || m->B->shape[1] != m->rank)
        return cv_fail(err, errsize, "%s: %s: lora_A is [%lld, %lld] and lora_B [%lld, %lld], but the rank is %lld", a->dir, m->module,
                       (long long)m->A->shape[0], (long long)m->A->shape[1], (long long)m->B->shape[0], (long long)m->B->shape[1], (long long)m->rank);
    if (m->magnitude && (m->magnitude->ndim != 1 || m->magnitude->shape[0] != m->B->shape[0]))
        return cv_fail(err, errsize, "%s: %s: lora_magnitude_vector must be [%lld]", a->dir, m->module, (long long)m->B->shape[0]);
    m->scale = c->rslora ? alpha / sqrt(r) : alpha / r;
    return 0;
}

/* task NULL: a plain peft adapter; else the LoRA of one task of a multi-task adapter (its keys named
 * by task_key; the other tasks' are skipped). */
static int load(const char *dir, const char *task, peft_adapter *a, char *err, size_t errsize) {
    memset(a, 0, sizeof *a);
    a->dir = cv_strdup(dir);
    char *cfg_path = cv_path_join(dir, "adapter_config.json");
    char *st_path = cv_path_join(dir, "adapter_model.safetensors");
    json_value *cfg = NULL;
    char **raw_names = NULL; /* per module, its name as saved (rank_pattern matches against it) */
    int rc = -1;
    adapter_cfg c;
    if (!a->dir || !cfg_path || !st_path) { cv_fail(err, errsize, "out of memory"); goto done; }
    if (!cv_file_exists(cfg_path)) { cv_fail(err, errsize, "%s: no adapter_config.json (is this a PEFT adapter directory?)", dir); goto done; }
    cfg = cv_read_json(cfg_path, err, errsize);
    if (!cfg || read_config(dir, cfg, &c, &a->dora, err, errsize) < 0) goto done;
    if (!cv_file_exists(st_path)) { cv_fail(err, errsize, "%s: no adapter_model.safetensors (only the safetensors format is supported)", dir); goto done; }
    if (st_add_file(&a->st, st_path, err, errsize) < 0) goto done;
    raw_names = calloc(a->st.n_tensors + 1, sizeof *raw_names);
    if (!raw_names) { cv_fail(err, errsize, "out of memory"); goto done; }
    for (size_t i = 0; i < a->st.n_tensors; i++) {
        const st_tensor *t = &a->st.tensors[i];
        if (strncmp(t->name, PEFT_PREFIX, strlen(PEFT_PREFIX)) != 0) {
            cv_fail(err, errsize, "%s: tensor %s does not start with \"" PEFT_PREFIX "\"", dir, t->name);
            goto done;
        }
        const char *key = t->name + strlen(PEFT_PREFIX);
        if (strstr(key, "lora_embedding_")) { cv_fail(err, errsize, "%s: %s: LoRA on embedding layers is not supported", dir, key); goto done; }
        if (strstr(key, ".lora_A.") || strstr(key, ".lora_B.")) {
            size_t dummy;
            if (!has_suffix(key, ".weight", &dummy)) { cv_fail(err, errsize, "%s: %s: LoRA biases (lora_bias) are not supported", dir, key); goto done; }
        }
        size_t stem;
        int kind = classify_key(key, &stem);
        if (task) {
            const char *t;
            size_t tlen;
            if (kind == KEY_MAGNITUDE) { cv_fail(err, errsize, "%s: %s: DoRA is not supported in a multi-task adapter", dir, key); goto done; }
            int tkind = task_key(key, &stem, &t, &tlen);
            if (tkind != KEY_PARAM) {
                if (tlen != strlen(task) || memcmp(t, task, tlen) != 0) continue; /* another task's */
                kind = tkind;
            }
        }
        if (kind == KEY_SKIP) continue;
        if (kind == KEY_PARAM) {
            if (add_param(a, key, t, err, errsize) < 0) goto done;
            continue;
        }
        size_t before = a->n_modules;
        lora_module *m = get_module(a, key, stem, err, errsize);
        if (!m) goto done;
        if (a->n_modules != before) {
            raw_names[a->n_modules - 1] = malloc(stem + 1);
            if (!raw_names[a->n_modules - 1]) { cv_fail(err, errsize, "out of memory"); goto done; }
            memcpy(raw_names[a->n_modules - 1], key, stem);
            raw_names[a->n_modules - 1][stem] = '\0';
        }
        const st_tensor **slot = kind == KEY_LORA_A ? &m->A : kind == KEY_LORA_B ? &m->B : &m->magnitude;
        if (*slot) { cv_fail(err, errsize, "%s: %s is stored twice", dir, key); goto done; }
        *slot = t;
    }
    if (a->n_modules == 0 && a->n_params == 0) { cv_fail(err, errsize, "%s: adapter has no tensors", dir); goto done; }
    for (size_t i = 0; i < a->n_modules; i++) {
        if (check_module(a, &c, &a->modules[i], raw_names[i], err, errsize) < 0) goto done;
        if (a->modules[i].rank > a->max_rank) a->max_rank = a->modules[i].rank;
    }
    rc = 0;
done:
    if (raw_names)
        for (size_t i = 0; i < a->st.n_tensors; i++) free(raw_names[i]);
    free(raw_names);
    json_free(cfg);
    free(cfg_path);
    free(st_path);
    return rc;
}

int peft_load(const char *dir, peft_adapter *a, char *err, size_t errsize) { return load(dir, NULL, a, err, errsize); }

int peft_load_task(const char *dir, const char *task, peft_adapter *a, char *err, size_t errsize) {
    if (load(dir, task, a, err, errsize) < 0) return -1;
    if (a->n_modules == 0) return cv_fail(err, errsize, "%s: no LoRA tensors for task %s", dir, task);
    return 0;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

int peft_list_tasks(const char *dir, char ***names, size_t *n_names, char *err, size_t errsize) {
    *names = NULL;
    *n_names = 0;
    st_set st;
    memset(&st, 0, sizeof st);
    char *st_path = cv_path_join(dir, "adapter_model.safetensors");
    char **list = NULL;
    size_t n = 0;
    int rc = -1;
    if (!st_path) { cv_fail(err, errsize, "out of memory"); goto done; }
    if (!cv_file_exists(st_path)) { cv_fail(err, errsize, "%s: no adapter_model.safetensors (is this a PEFT adapter directory?)", dir); goto done; }
    if (st_add_file(&st, st_path, err, errsize) < 0) goto done;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const char *key = st.tensors[i].name, *t;
        size_t stem, tlen;
        if (task_key(key, &stem, &t, &tlen) == KEY_PARAM) continue;
        char shown[256];
        show_name(t, tlen, shown, sizeof shown);
        size_t dummy;
        if (has_suffix(key, ".lora_A.weight", &dummy) || has_suffix(key, ".lora_B.weight", &dummy) || (tlen == 7 && memcmp(t, "default", 7) == 0)) {
            cv_fail(err, errsize, "%s: %s names no task: a single-task adapter (give it with --task-adapter NAME=DIR)", dir, key);
            goto done;
        }
        if (!peft_task_name_ok(t, tlen)) {
            cv_fail(err, errsize, "%s: task name \"%s\" (of %.*s) is not 1 to %d letters, digits, '-' or '_'", dir, shown, (int)(stem < 200 ? stem : 200), key,
                    PEFT_MAX_TASK_NAME);
            goto done;
        }
        size_t k = 0;
        while (k < n && (strlen(list[k]) != tlen || memcmp(list[k], t, tlen) != 0)) k++;
        if (k < n) continue;
        char **grown = realloc(list, (n + 1) * sizeof *list);
        if (!grown || !(grown[n] = malloc(tlen + 1))) { list = grown ? grown : list; cv_fail(err, errsize, "out of memory"); goto done; }
        list = grown;
        memcpy(list[n], t, tlen);
        list[n++][tlen] = '\0';
    }
    if (n == 0) { cv_fail(err, errsize, "%s: no LoRA tensors named <module>.lora_A.<task>.weight (not a multi-task adapter)", dir); goto done; }
    qsort(list, n, sizeof *list, cmp_str);
    *names = list;
    *n_names = n;
    list = NULL;
    rc = 0;
done:
    if (list)
        for (size_t k = 0; k < n; k++) free(list[k]);
    free(list);
    st_close(&st);
    free(st_path);
    return rc;
}

void peft_free(peft_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_modules; i++) free(a->modules[i].module);
    for (size_t i = 0; i < a->n_params; i++) free(a->params[i].name);
    free(a->modules);
    free(a->params);
    st_close(&a->st);
    free(a->dir);
    memset(a, 0, sizeof *a);
}

const lora_module *peft_find_module(const peft_adapter *a, const char *module) {
    for (size_t i = 0; i < a->n_modules; i++)
        if (strcmp(a->modules[i].module, module) == 0) return &a->modules[i];
    return NULL;
}

const adapter_param *peft_find_param(const peft_adapter *a, const char *name) {
    for (size_t i = 0; i < a->n_params; i++)
        if (strcmp(a->params[i].name, name) == 0) return &a->params[i];
    return NULL;
}

/* Elements [first, first + count) of t as float32. */
static float *read_part(const peft_adapter *a, const st_tensor *t, uint64_t first, uint64_t count, char *err, size_t errsize) {
    float *p = malloc((size_t)(count ? count : 1) * sizeof *p);
    if (!p) { cv_fail(err, errsize, "out of memory"); return NULL; }
    if (st_read_f32_range(&a->st, t, first, count, p, err, errsize) < 0) { free(p); return NULL; }
    return p;
}

/* peft: delta = (B @ A) * scaling in float32; LoRA: W += delta;
 * DoRA: V = W + delta, norm = ||V|| over the input dimension of each output row (dora.py
 * get_weight_norm: torch.linalg.norm(weight, dim=1) on the [out, in] weight), W = (m / norm) * V.
 * The matrix product is accumulated in double and rounded once (float32 BLAS differs by at most
 * an ulp or so); every later step is a float32 operation in peft's order. Only the rows asked for
 * are read from lora_B and the magnitude vector. */
int peft_merge(const peft_adapter *a, const lora_module *m, float *W, int64_t row0, int64_t rows, int64_t in, char *err, size_t errsize) {
    if (m->A->shape[1] != in || row0 < 0 || rows < 0 || row0 + rows > m->B->shape[0])
        return cv_fail(err, errsize, "%s: %s: lora_B is [%lld, %lld] and lora_A [%lld, %lld], which does not fit rows %lld..%lld of a weight with %lld columns",
                       a->dir, m->module, (long long)m->B->shape[0], (long long)m->B->shape[1], (long long)m->A->shape[0], (long long)m->A->shape[1],
                       (long long)row0, (long long)(row0 + rows), (long long)in);
    int rc = -1;
    const int64_t r = m->rank;
    float *A = read_part(a, m->A, 0, st_numel(m->A), err, errsize);
    float *B = A ? read_part(a, m->B, (uint64_t)(row0 * r), (uint64_t)(rows * r), err, errsize) : NULL;
    float *mag = B && m->magnitude ? read_part(a, m->magnitude, (uint64_t)row0, (uint64_t)rows, err, errsize) : NULL;
    double *acc = malloc((size_t)(in ? in : 1) * sizeof *acc);
    if (!A || !B || (m->magnitude && !mag)) goto done;
    if (!acc) { cv_fail(err, errsize, "out of memory"); goto done; }
    const float scale = (float)m->scale;
    for (int64_t o = 0; o < rows; o++) {
        float *row = W + o * in;
        for (int64_t i = 0; i < in; i++) acc[i] = 0.0;
        for (int64_t k = 0; k < r; k++) {
            const double b = B[o * r + k];
            const float *arow = A + k * in;
            for (int64_t i = 0; i < in; i++) acc[i] += b * (double)arow[i];
        }
        if (!mag) {
            for (int64_t i = 0; i < in; i++) row[i] = row[i] + (float)acc[i] * scale;
            continue;
        }
        double sumsq = 0.0;
        for (int64_t i = 0; i < in; i++) {
            row[i] = row[i] + (float)acc[i] * scale;
            sumsq += (double)row[i] * (double)row[i];
        }
        const float norm = (float)sqrt(sumsq);
        if (!(norm > 0.0f)) { cv_fail(err, errsize, "%s: %s: DoRA weight row %lld has zero norm", a->dir, m->module, (long long)(row0 + o)); goto done; }
        const float factor = mag[o] / norm;
        for (int64_t i = 0; i < in; i++) row[i] = factor * row[i];
    }
    rc = 0;
done:
    free(A);
    free(B);
    free(mag);
    free(acc);
    return rc;
}
