/* Test helper for tests/test_convert.sh: builds checkpoint variants from the tiny fixture.
 *   relayout HF_IN HF_OUT            transformers >= 4.52 layout: model.language_model.* / model.visual.*
 *                                    names in one model.safetensors, nested config.json (text_config,
 *                                    rope_parameters), preprocessor_config.json with size{shortest,longest}_edge
 *   relayout-adapter AD_IN AD_OUT    the same renaming for a PEFT adapter
 *   st-edit IN OUT [--drop NAME] [--shape NAME d0,d1,...] [--rename OLD NEW] [--copy OLD NEW]   valid file, edited
 *           [--rename-prefix OLD NEW]   every tensor whose name starts with OLD: that part becomes NEW
 *   st-lie IN OUT offsets-past-end|size-mismatch|bad-json|header-length|overlap  header that lies
 * It reuses the converter's JSON parser to read; everything it writes is produced here. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../model_convert/json.h"

typedef struct {
    char name[256];
    char dtype[16];
    int ndim;
    long long shape[8];
    unsigned char *data;
    size_t nbytes;
} tensor;

typedef struct {
    tensor *t;
    size_t n;
} tensor_file;

static void die(const char *fmt, const char *a) {
    fprintf(stderr, "tool_relayout: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(2);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die("cannot write %s", path);
}

static void load_st(const char *path, tensor_file *tf) {
    size_t len;
    unsigned char *b = slurp(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    char err[256];
    json_value *h = json_parse((const char *)b + 8, (size_t)hl, err, sizeof err);
    if (!h) die("bad header: %s", err);
    tf->t = calloc(h->n_items, sizeof *tf->t);
    tf->n = 0;
    for (size_t i = 0; i < h->n_items; i++) {
        if (strcmp(h->keys[i], "__metadata__") == 0) continue;
        tensor *t = &tf->t[tf->n++];
        const json_value *e = &h->items[i];
        snprintf(t->name, sizeof t->name, "%s", h->keys[i]);
        snprintf(t->dtype, sizeof t->dtype, "%s", json_get(e, "dtype")->string);
        const json_value *s = json_get(e, "shape"), *o = json_get(e, "data_offsets");
        t->ndim = (int)s->n_items;
        for (int d = 0; d < t->ndim; d++) t->shape[d] = (long long)s->items[d].number;
        size_t begin = (size_t)o->items[0].number, end = (size_t)o->items[1].number;
        t->nbytes = end - begin;
        t->data = malloc(t->nbytes + 1);
        memcpy(t->data, b + 8 + hl + begin, t->nbytes);
    }
    json_free(h);
    free(b);
}

static void free_st(tensor_file *tf) {
    for (size_t i = 0; i < tf->n; i++) free(tf->t[i].data);
    free(tf->t);
}

typedef enum { LIE_NONE, LIE_PAST_END, LIE_SIZE, LIE_JSON, LIE_HEADER_LEN, LIE_OVERLAP } lie;

static void save_st(const char *path, const tensor_file *tf, lie how) {
    size_t cap = 1 << 20, n = 0;
    char *h = malloc(cap);
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (size_t i = 0; i < tf->n; i++) {
        const tensor *t = &tf->t[i];
        size_t begin = off, end = off + t->nbytes;
        long long shape0 = t->ndim ? t->shape[0] : 0;
        if (how == LIE_PAST_END && i + 1 == tf->n) { begin += 4096; end += 4096; }
        if (how == LIE_SIZE && i == 0) shape0 += 1;
        if (how == LIE_OVERLAP && i == 1) { begin = 0; end = t->nbytes; }
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) n += (size_t)snprintf(h + n, cap - n, d ? ",%lld" : "%lld", d ? t->shape[d] : shape0);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%zu,%zu]}", begin, end);
        off += t->nbytes;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    if (how == LIE_JSON) h[n - 1] = ',';              /* an object that never closes */
    while (n % 8) h[n++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot write %s", path);
    uint64_t hl = how == LIE_HEADER_LEN ? (uint64_t)n + off + 1 : (uint64_t)n;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hl >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(h, 1, n, f);
    for (size_t i = 0; i < tf->n; i++) fwrite(tf->t[i].data, 1, tf->t[i].nbytes, f);
    if (fclose(f) != 0) die("cannot write %s", path);
    free(h);
}

/* hub -> transformers >= 4.52 names */
static void new_name(const char *in, char *out, size_t size) {
    if (strncmp(in, "model.", 6) == 0) snprintf(out, size, "model.language_model.%s", in + 6);
    else if (strncmp(in, "visual.", 7) == 0) snprintf(out, size, "model.visual.%s", in + 7);
    else snprintf(out, size, "%s", in);
}

/* ---- JSON output ---- */

static void put_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void put_json(FILE *f, const json_value *v) {
    switch (v->type) {
    case JSON_NULL: fputs("null", f); break;
    case JSON_BOOL: fputs(v->boolean ? "true" : "false", f); break;
    case JSON_NUMBER:
        if (v->number == (double)(long long)v->number && v->number < 9e15 && v->number > -9e15) fprintf(f, "%lld", (long long)v->number);
        else fprintf(f, "%.17g", v->number);
        break;
    case JSON_STRING: put_string(f, v->string, v->string_len); break;
    case JSON_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < v->n_items; i++) { if (i) fputc(',', f); put_json(f, &v->items[i]); }
        fputc(']', f);
        break;
    case JSON_OBJECT:
        fputc('{', f);
        for (size_t i = 0; i < v->n_items; i++) {
            if (i) fputc(',', f);
            put_string(f, v->keys[i], v->key_lens[i]);
            fputc(':', f);
            put_json(f, &v->items[i]);
        }
        fputc('}', f);
        break;
    }
}

static int is_text_key(const char *k) {
    static const char *keys[] = { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                  "rms_norm_eps", "vocab_size", "hidden_act", "max_position_embeddings", "max_window_layers",
                                  "sliding_window", "use_sliding_window", "attention_dropout", "initializer_range", "use_cache",
                                  "bos_token_id", "eos_token_id", "rope_theta", "rope_scaling" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(k, keys[i]) == 0) return 1;
    return 0;
}

static json_value *read_json(const char *path) {
    size_t len;
    unsigned char *b = slurp(path, &len);
    char err[256];
    json_value *v = json_parse((const char *)b, len, err, sizeof err);
    free(b);
    if (!v) die("bad JSON: %s", err);
    return v;
}

/* text fields move into text_config; rope_theta moves into rope_parameters (as transformers 5
 * writes it); token ids stay at the top. */
static void write_nested_config(const char *in, const char *out) {
    json_value *c = read_json(in);
    FILE *f = fopen(out, "w");
    if (!f) die("cannot write %s", out);
    const json_value *theta = json_get(c, "rope_theta"), *rs = json_get(c, "rope_scaling");
    fputc('{', f);
    int first = 1;
    for (size_t i = 0; i < c->n_items; i++) {
        if (is_text_key(c->keys[i])) continue;
        if (strcmp(c->keys[i], "transformers_version") == 0) { fputs(first ? "" : ",", f); fputs("\"transformers_version\":\"4.52.0\"", f); first = 0; continue; }
        if (!first) fputc(',', f);
        first = 0;
        put_string(f, c->keys[i], c->key_lens[i]);
        fputc(':', f);
        put_json(f, &c->items[i]);
    }
    fputs(",\"text_config\":{\"model_type\":\"qwen2_vl_text\"", f);
    for (size_t i = 0; i < c->n_items; i++) {
        if (!is_text_key(c->keys[i]) || strcmp(c->keys[i], "rope_theta") == 0 || strcmp(c->keys[i], "rope_scaling") == 0) continue;
        fputc(',', f);
        put_string(f, c->keys[i], c->key_lens[i]);
        fputc(':', f);
        put_json(f, &c->items[i]);
    }
    fputs(",\"rope_theta\":null,\"rope_parameters\":{\"rope_type\":\"default\",\"mrope_section\":", f);
    put_json(f, json_get(rs, "mrope_section"));
    fputs(",\"rope_theta\":", f);
    put_json(f, theta);
    fputs("}}}\n", f);
    fclose(f);
    json_free(c);
}

static void write_new_preprocessor(const char *in, const char *out) {
    json_value *c = read_json(in);
    FILE *f = fopen(out, "w");
    if (!f) die("cannot write %s", out);
    fputc('{', f);
    int first = 1;
    for (size_t i = 0; i < c->n_items; i++) {
        if (strcmp(c->keys[i], "min_pixels") == 0 || strcmp(c->keys[i], "max_pixels") == 0) continue;
        if (!first) fputc(',', f);
        first = 0;
        put_string(f, c->keys[i], c->key_lens[i]);
        fputc(':', f);
        put_json(f, &c->items[i]);
    }
    fputs(",\"size\":{\"shortest_edge\":", f);
    put_json(f, json_get(c, "min_pixels"));
    fputs(",\"longest_edge\":", f);
    put_json(f, json_get(c, "max_pixels"));
    fputs("}}\n", f);
    fclose(f);
    json_free(c);
}

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

static void copy_file(const char *dir_in, const char *dir_out, const char *name) {
    char *a = join(dir_in, name), *b = join(dir_out, name);
    size_t n;
    unsigned char *d = slurp(a, &n);
    spit(b, d, n);
    free(d);
    free(a);
    free(b);
}

static void relayout(const char *in, const char *out) {
    mkdir(out, 0777);
    char *idx = join(in, "model.safetensors.index.json");
    json_value *index = read_json(idx);
    const json_value *map = json_get(index, "weight_map");
    tensor_file all = { calloc(map->n_items, sizeof(tensor)), 0 };
    /* every shard once, tensors renamed, all into one file */
    for (size_t i = 0; i < map->n_items; i++) {
        int seen = 0;
        for (size_t j = 0; j < i; j++) seen |= strcmp(map->items[j].string, map->items[i].string) == 0;
        if (seen) continue;
        char *shard = join(in, map->items[i].string);
        tensor_file tf;
        load_st(shard, &tf);
        for (size_t k = 0; k < tf.n; k++) {
            all.t[all.n] = tf.t[k];
            new_name(tf.t[k].name, all.t[all.n].name, sizeof all.t[all.n].name);
            all.n++;
        }
        free(tf.t);
        free(shard);
    }
    char *st = join(out, "model.safetensors");
    save_st(st, &all, LIE_NONE);
    free(st);
    free_st(&all);
    json_free(index);
    free(idx);
    char *ci = join(in, "config.json"), *co = join(out, "config.json");
    write_nested_config(ci, co);
    char *pi = join(in, "preprocessor_config.json"), *po = join(out, "preprocessor_config.json");
    write_new_preprocessor(pi, po);
    copy_file(in, out, "tokenizer.json");
    free(ci); free(co); free(pi); free(po);
}

static void relayout_adapter(const char *in, const char *out) {
    mkdir(out, 0777);
    char *si = join(in, "adapter_model.safetensors"), *so = join(out, "adapter_model.safetensors");
    tensor_file tf;
    load_st(si, &tf);
    const char *prefix = "base_model.model.";
    for (size_t i = 0; i < tf.n; i++) {
        char tmp[200];
        new_name(tf.t[i].name + strlen(prefix), tmp, sizeof tmp);
        snprintf(tf.t[i].name, sizeof tf.t[i].name, "%s%s", prefix, tmp);
    }
    save_st(so, &tf, LIE_NONE);
    free_st(&tf);
    copy_file(in, out, "adapter_config.json");
    free(si);
    free(so);
}

static tensor *find(tensor_file *tf, const char *name) {
    for (size_t i = 0; i < tf->n; i++)
        if (strcmp(tf->t[i].name, name) == 0) return &tf->t[i];
    die("no tensor %s", name);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "relayout") == 0) { relayout(argv[2], argv[3]); return 0; }
    if (argc >= 4 && strcmp(argv[1], "relayout-adapter") == 0) { relayout_adapter(argv[2], argv[3]); return 0; }
    if (argc >= 4 && strcmp(argv[1], "st-edit") == 0) {
        tensor_file tf;
        load_st(argv[2], &tf);
        for (int i = 4; i < argc; i++) {
            if (strcmp(argv[i], "--drop") == 0 && i + 1 < argc) {
                tensor *t = find(&tf, argv[++i]);
                free(t->data);
                *t = tf.t[--tf.n];
            } else if (strcmp(argv[i], "--shape") == 0 && i + 2 < argc) {
                tensor *t = find(&tf, argv[++i]);
                char *s = argv[++i];
                t->ndim = 0;
                for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) t->shape[t->ndim++] = atoll(tok);
            } else if (strcmp(argv[i], "--copy") == 0 && i + 2 < argc) {
                tf.t = realloc(tf.t, (tf.n + 1) * sizeof *tf.t);
                tensor *t = find(&tf, argv[i + 1]);
                tensor *c = &tf.t[tf.n++];
                *c = *t;
                c->data = malloc(t->nbytes + 1);
                memcpy(c->data, t->data, t->nbytes);
                snprintf(c->name, sizeof c->name, "%s", argv[i + 2]);
                i += 2;
            } else if (strcmp(argv[i], "--rename-prefix") == 0 && i + 2 < argc) {
                const char *old = argv[i + 1], *repl = argv[i + 2];
                size_t n = strlen(old), hits = 0;
                for (size_t k = 0; k < tf.n; k++) {
                    if (strncmp(tf.t[k].name, old, n) != 0) continue;
                    char renamed[sizeof tf.t[k].name];
                    snprintf(renamed, sizeof renamed, "%s%s", repl, tf.t[k].name + n);
                    snprintf(tf.t[k].name, sizeof tf.t[k].name, "%s", renamed);
                    hits++;
                }
                if (!hits) die("no tensor starts with %s", old);
                i += 2;
            } else if (strcmp(argv[i], "--rename") == 0 && i + 2 < argc) {
                tensor *t = find(&tf, argv[i + 1]);
                snprintf(t->name, sizeof t->name, "%s", argv[i + 2]);
                i += 2;
            } else die("bad st-edit argument %s", argv[i]);
        }
        save_st(argv[3], &tf, LIE_NONE);
        free_st(&tf);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "st-lie") == 0) {
        lie how = strcmp(argv[4], "offsets-past-end") == 0 ? LIE_PAST_END : strcmp(argv[4], "size-mismatch") == 0 ? LIE_SIZE
                : strcmp(argv[4], "bad-json") == 0 ? LIE_JSON : strcmp(argv[4], "header-length") == 0 ? LIE_HEADER_LEN
                : strcmp(argv[4], "overlap") == 0 ? LIE_OVERLAP : LIE_NONE;
        if (how == LIE_NONE) die("unknown lie %s", argv[4]);
        tensor_file tf;
        load_st(argv[2], &tf);
        save_st(argv[3], &tf, how);
        free_st(&tf);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of tests/tool_relayout.c\n");
    return 2;
}
