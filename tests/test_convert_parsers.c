/* The converter's parsers and writer (model_convert/json.c, safetensors.c, writer.c): JSON values,
 * strict rejection of invalid JSON and UTF-8, depth limit, every truncation and random mutations of
 * a document, the 6 MB tokenizer.json; safetensors headers mutated at random (under ASan: no crash,
 * no leak, no read outside the file); float16/bfloat16 rounding, exhaustively; the writer's layout, validation and atomic replacement. */
#define _POSIX_C_SOURCE 200809L
#include "../model_convert/json.c"
#include "../model_convert/writer.c"
#include "../model_convert/util.c"
#include "../model_convert/safetensors.c"
#include "../model_convert/dtype.c"
#include <math.h>

#include <dirent.h>
#include <time.h>

#include "test.h"

static json_value *parse(const char *s, char *err, size_t errsize) { return json_parse(s, strlen(s), err, errsize); }

static void test_json_values(void) {
    const char *doc = "{\"n\": [0, -0.5, 1e-6, 12345678901234, 2E+2], \"s\": \"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
                      " \"z\": \"a\\u0000b\", \"t\": true, \"f\": false, \"x\": null, \"e\": [], \"o\": {}, \"u\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}";
    char err[256];
    json_value *v = parse(doc, err, sizeof err);
    CHECK(v != NULL, "%s", err);
    if (!v) return;
    CHECK(v->type == JSON_OBJECT && v->n_items == 9, "object of 9");
    const json_value *n = json_get(v, "n");
    CHECK(n && n->type == JSON_ARRAY && n->n_items == 5, "array");
    if (n && n->n_items == 5) {
        CHECK(n->items[1].number == -0.5 && n->items[2].number == 1e-6 && n->items[3].number == 12345678901234.0 && n->items[4].number == 200.0, "numbers");
    }
    const json_value *s = json_get(v, "s");
    const char want[] = "q\"b\\s/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80";
    CHECK(s && s->type == JSON_STRING && s->string_len == sizeof want - 1 && memcmp(s->string, want, sizeof want) == 0, "escapes decode");
    const json_value *z = json_get(v, "z");
    CHECK(z && z->string_len == 3 && z->string[1] == '\0' && z->string[2] == 'b', "embedded NUL");
    CHECK(json_get(v, "t")->boolean == 1 && json_get(v, "f")->type == JSON_BOOL && json_get(v, "f")->boolean == 0, "booleans");
    CHECK(json_get(v, "x")->type == JSON_NULL, "null");
    CHECK(json_get(v, "e")->n_items == 0 && json_get(v, "e")->items != NULL && json_get(v, "o")->type == JSON_OBJECT, "empty containers");
    CHECK(strcmp(json_get(v, "u")->string, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0, "raw UTF-8 kept");
    CHECK(json_get(v, "missing") == NULL && json_get(n, "n") == NULL && json_get(NULL, "n") == NULL, "json_get misses");
    json_free(v);
    json_free(NULL);

    /* keys holding U+0000 (a tokenizer vocabulary may): distinct from their prefix, found by length */
    v = parse("{\"a\\u0000b\": 1, \"a\": 2, \"a\\u0000c\": 3}", err, sizeof err);
    CHECK(v && v->n_items == 3, "NUL-bearing keys parse as three members: %s", v ? "" : err);
    if (v && v->n_items == 3) {
        CHECK(v->key_lens[0] == 3 && v->keys[0][1] == '\0', "key length kept past U+0000");
        CHECK(json_get_n(v, "a\0b", 3) == &v->items[0] && json_get_n(v, "a\0c", 3) == &v->items[2], "json_get_n finds each");
        CHECK(json_get(v, "a") == &v->items[1], "a C-string lookup finds the plain key, not a NUL-bearing one");
        CHECK(json_get_n(v, "a\0d", 3) == NULL && json_get_n(NULL, "a", 1) == NULL, "json_get_n misses");
    }
    json_free(v);
    v = parse("{\"a\\u0000b\": 1, \"a\\u0000b\": 2}", err, sizeof err);
    CHECK(v == NULL && strstr(err, "duplicate"), "duplicate NUL-bearing keys rejected: %s", err);
    json_free(v);
}

static void test_json_rejects(void) {
    static const char *bad[] = {
        "", " ", "[1,]", "[,1]", "{\"a\" 1}", "{a:1}", "{\"a\":}", "'x'", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "tru", "nul",
        "[1 2]", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\x01\"", "\"\xff\"",
        "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"\x80\"", "1e999", "-1e999", "{\"a\":1,\"a\":2}",
        "{} x", "\xef\xbb\xbf{}", "NaN", "Infinity", "[", "{", "\"abc", "[1,2", "{\"a\":1,}", "nulll", "[true false]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        json_value *v = parse(bad[i], err, sizeof err);
        CHECK(v == NULL && strncmp(err, "JSON: ", 6) == 0, "case %zu (%s) must fail with a message, got %s", i, bad[i], err);
        json_free(v);
    }
    /* an embedded NUL byte in the buffer is a control character, not the end of the text */
    char err[256] = "";
    CHECK(json_parse("[1]\0", 4, err, sizeof err) == NULL, "NUL after the value");
    CHECK(json_parse(NULL, 0, err, sizeof err) == NULL, "NULL text");
    json_value *v = json_parse("[1]", 3, NULL, 0);
    CHECK(v != NULL, "no error buffer needed");
    json_free(v);
}

static void test_json_depth(void) {
    char err[256];
    size_t n = 1000000;
    char *deep = malloc(2 * n);
    if (!deep) return;
    memset(deep, '[', n);
    json_value *v = json_parse(deep, n, err, sizeof err);
    CHECK(v == NULL && strstr(err, "nesting"), "deep nesting rejected: %s", err);
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        v = json_parse(deep, 2 * (size_t)depth, err, sizeof err);
        CHECK((v != NULL) == (depth == JSON_MAX_DEPTH), "depth %d", depth);
        json_free(v);
    }
    free(deep);
}

static const char sample[] =
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"!\": 0, \"\\u0120t\": 83, \"\xc3\xa9\": 7}, \"merges\": [\"\\u0120 t\", [\"a\", \"b\"]]},"
    " \"added_tokens\": [{\"id\": 151643, \"content\": \"<|endoftext|>\", \"special\": true, \"x\": null}],"
    " \"n\": [-1.25e-3, 0, 7], \"s\": \"\\ud83d\\ude00 \\\" \\\\\"}";

static void test_json_truncations(void) {
    size_t n = strlen(sample);
    char err[256];
    json_value *full = json_parse(sample, n, err, sizeof err);
    CHECK(full != NULL, "%s", err);
    json_free(full);
    int all_fail = 1;
    for (size_t k = 0; k < n; k++) {
        char *copy = malloc(k + 1); /* exact-size buffer: ASan catches any read past it */
        memcpy(copy, sample, k);
        json_value *v = json_parse(copy, k, err, sizeof err);
        if (v) all_fail = 0;
        json_free(v);
        free(copy);
    }
    CHECK(all_fail, "every strict prefix of an object is invalid");
}

static void test_json_fuzz(void) {
    size_t n = strlen(sample);
    uint64_t state = 12345;
    int parsed = 0, rejected = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char *buf = malloc(n + 8);
        memcpy(buf, sample, n);
        size_t len = n;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(state >> 33) % len;
            unsigned char byte = (unsigned char)(state >> 17);
            switch ((state >> 60) % 3) {
            case 0: buf[pos] = (char)byte; break;
            case 1: if (len < n + 8) { memmove(buf + pos + 1, buf + pos, len - pos); buf[pos] = (char)byte; len++; } break;
            default: if (len > 1) { memmove(buf + pos, buf + pos + 1, len - pos - 1); len--; } break;
            }
        }
        char err[256] = "";
        char *exact = malloc(len);
        memcpy(exact, buf, len);
        json_value *v = json_parse(exact, len, err, sizeof err);
        if (v) parsed++;
        else { rejected++; CHECK(err[0] != '\0', "rejection without a message"); }
        json_free(v);
        free(exact);
        free(buf);
    }
    CHECK(parsed > 0 && rejected > 10000, "mutations: %d parsed, %d rejected", parsed, rejected);
}


static void test_json_tokenizer_file(void) {
    size_t len;
    char *text = test_read_file("tests/fixtures/qwen2vl-tiny/base/tokenizer.json", &len);
    CHECK(text != NULL, "fixture tokenizer.json");
    if (!text) return;
    char err[256];
    clock_t t0 = clock();
    json_value *v = json_parse(text, len, err, sizeof err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(v != NULL, "%s", err);
    const json_value *model = json_get(v, "model");
    const json_value *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    CHECK(vocab && vocab->n_items == 151643, "vocab size");
    CHECK(merges && merges->n_items == 151387, "merge count");
    CHECK(json_get(vocab, "!") && json_get(vocab, "!")->number == 0, "vocab[\"!\"] = 0");
    CHECK(secs < 3.0, "parse took %.2f s even with sanitizers", secs);
    printf("     tokenizer.json (%zu bytes) parsed in %.3f s (ASan build)\n", len, secs);
    json_free(v);
    free(text);
}

/* ---- safetensors ---- */

static uint64_t rd64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_safetensors_valid(void) {
    st_set set = { 0 };
    char err[512] = "";
    const char *path = "tests/fixtures/qwen2vl-tiny/abc_instruct_adapter/adapter_model.safetensors";
    CHECK(st_add_file(&set, path, err, sizeof err) == 0, "%s", err);
    CHECK(set.n_tensors == 28, "28 tensors, got %zu", set.n_tensors);
    const st_tensor *t = st_find(&set, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
    CHECK(t && t->dtype == ST_BF16 && t->ndim == 2 && t->shape[0] == 8 && t->shape[1] == 64, "entry parsed");
    if (t) {
        float *v = malloc(8 * 64 * sizeof *v);
        CHECK(st_read_f32(&set, t, v, err, sizeof err) == 0, "%s", err);
        int finite = 1;
        for (int i = 0; i < 8 * 64; i++) finite &= v[i] == v[i] && v[i] > -100 && v[i] < 100;
        CHECK(finite, "values are plausible");
        free(v);
    }
    st_close(&set);
    CHECK(st_open_checkpoint(&set, "tests/fixtures/qwen2vl-tiny/base", err, sizeof err) == 0 && set.n_files == 2 && set.n_tensors == 57,
          "sharded checkpoint: %s", err);
    st_close(&set);
}

static void test_safetensors_fuzz(void) {
    size_t len;
    unsigned char *orig = (unsigned char *)test_read_file("tests/fixtures/qwen2vl-tiny/abc_instruct_adapter/adapter_model.safetensors", &len);
    CHECK(orig != NULL, "fixture");
    if (!orig) return;
    uint64_t hl = rd64(orig);
    uint64_t state = 99;
    int accepted = 0, rejected = 0;
    unsigned char *buf = malloc(len);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, orig, len);
        size_t n = len;
        for (int e = 0; e < 1 + iter % 3; e++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            /* mostly the header (where the structure is), sometimes the length field or the file size */
            size_t pos = (state >> 40) % 16 == 0 ? (size_t)(state >> 20) % 8 : 8 + (size_t)(state >> 24) % hl;
            const char *digits = "0123456789[]{},:\"-";
            buf[pos] = (state >> 62) ? (unsigned char)digits[(state >> 8) % 18] : (unsigned char)(state >> 8);
            if ((state >> 33) % 50 == 0) n = (size_t)(state >> 12) % len;
        }
        write_file("build/test_convert_fuzz.safetensors", buf, n);
        st_set set = { 0 };
        char err[512] = "";
        if (st_add_file(&set, "build/test_convert_fuzz.safetensors", err, sizeof err) == 0) {
            accepted++;
            for (size_t i = 0; i < set.n_tensors; i++) {
                float *v = malloc((size_t)st_numel(&set.tensors[i]) * sizeof *v + 4);
                CHECK(st_read_f32(&set, &set.tensors[i], v, err, sizeof err) == 0, "accepted file must be readable: %s", err);
                free(v);
            }
        } else {
            rejected++;
            CHECK(strstr(err, "build/test_convert_fuzz.safetensors") != NULL, "message names the file: %s", err);
        }
        st_close(&set);
    }
    free(buf);
    free(orig);
    remove("build/test_convert_fuzz.safetensors");
    CHECK(rejected > 1000, "%d accepted, %d rejected", accepted, rejected);
    printf("     safetensors mutations: %d accepted, %d rejected\n", accepted, rejected);
}

/* ---- 16-bit floats ---- */

/* reference decoders by arithmetic */
static double half_ref(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}
static double bf16_ref(uint16_t h) {
    int e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    return (h & 0x8000) ? -v : v;
}

/* Every finite value round-trips; the midpoint between two neighbours goes to the even one, and
 * the floats just beside the midpoint go to the nearer neighbour. */
static void check_format(const char *name, int exp_all_ones, double (*ref)(uint16_t), float (*widen)(uint16_t),
                         int (*narrow_fn)(float, uint16_t *), int exp_shift) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000 && bad < 5; h++) {
        if ((int)((h & 0x7FFF) >> exp_shift) == exp_all_ones) continue; /* inf/nan */
        uint16_t got = 0xFFFF;
        if ((double)widen((uint16_t)h) != ref((uint16_t)h)) { bad++; CHECK(0, "%s widen %04x", name, h); }
        if (narrow_fn((float)ref((uint16_t)h), &got) != 0 || got != h) { bad++; CHECK(0, "%s roundtrip %04x -> %04x", name, h, got); }
        uint32_t next = h + 1;
        if ((h & 0x8000) || (int)((next & 0x7FFF) >> exp_shift) == exp_all_ones) continue;
        float mid = (float)((ref((uint16_t)h) + ref((uint16_t)next)) / 2); /* exact in float32 */
        uint16_t even = (h & 1) ? (uint16_t)next : (uint16_t)h;
        uint16_t below = 0, above = 0, at = 0;
        narrow_fn(mid, &at);
        narrow_fn(nextafterf(mid, 0.0f), &below);
        narrow_fn(nextafterf(mid, INFINITY), &above);
        if (at != even || below != h || above != next) { bad++; CHECK(0, "%s rounding near %04x: %04x %04x %04x", name, h, below, at, above); }
        uint16_t neg = 0;
        narrow_fn(-mid, &neg);
        if (neg != (even | 0x8000)) { bad++; CHECK(0, "%s negative tie %04x", name, h); }
    }
    CHECK(bad == 0, "%s: %d mismatches", name, bad);
}

static void test_half_formats(void) {
    check_format("f16", 31, half_ref, abc_f16_to_f32, abc_f32_to_f16, 10);
    check_format("bf16", 255, bf16_ref, abc_bf16_to_f32, abc_f32_to_bf16, 7);
    uint16_t h = 0;
    CHECK(abc_f32_to_f16(65519.996f, &h) == 0 && h == 0x7BFF, "just below the overflow threshold");
    CHECK(abc_f32_to_f16(65520.0f, &h) == -1 && abc_f32_to_f16(-1e6f, &h) == -1 && abc_f32_to_f16(NAN, &h) == -1, "f16 overflow refused");
    CHECK(abc_f32_to_f16(ldexpf(1, -25), &h) == 0 && h == 0, "half the smallest subnormal ties to 0");
    CHECK(abc_f32_to_f16(nextafterf(ldexpf(1, -25), 1), &h) == 0 && h == 1, "just above it rounds up");
    CHECK(abc_f32_to_f16(1e-30f, &h) == 0 && h == 0 && abc_f32_to_f16(-1e-30f, &h) == 0 && h == 0x8000, "underflow keeps the sign");
    CHECK(abc_f32_to_bf16(3.4e38f, &h) == -1 && abc_f32_to_bf16(INFINITY, &h) == -1 && abc_f32_to_bf16(3.38e38f, &h) == 0, "bf16 overflow");
}

/* ---- writer ---- */

static int fills, frees;
static int fill_bytes(void *ctx, void *dst, char *err, size_t errsize) {
    (void)err; (void)errsize;
    fills++;
    memset(dst, *(unsigned char *)ctx, 5);
    return 0;
}
static int fill_fails(void *ctx, void *dst, char *err, size_t errsize) {
    (void)ctx; (void)dst;
    snprintf(err, errsize, "source vanished");
    return -1;
}
static void count_free(void *ctx) { (void)ctx; frees++; }


static int temp_files_in_build(void) {
    DIR *d = opendir("build");
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, "test_convert_json.abc.tmp") != NULL;
    closedir(d);
    return n;
}

static void test_writer_layout(void) {
    abc_writer *w = writer_new();
    int64_t iv[2] = { -3, 1LL << 40 };
    double dv = 0.1;
    float data[6] = { 1, 2, 3, 4, 5, 6 };
    int64_t shape[2] = { 2, 3 }, shape5[1] = { 5 };
    static unsigned char seven = 7;
    CHECK(writer_add_i64(w, "a.ints", iv, 2) == 0, "i64");
    CHECK(writer_add_f64(w, "a.f", &dv, 1) == 0, "f64");
    CHECK(writer_add_str(w, "a.s", "hello") == 0, "str");
    CHECK(writer_add_tensor(w, "t.f32", ABC_FILE_F32, 2, shape, data, sizeof data) == 0, "tensor");
    CHECK(writer_add_tensor_fn(w, "t.u8", ABC_FILE_U8, 1, shape5, 5, fill_bytes, &seven, count_free) == 0, "fn tensor");
    fills = frees = 0;
    char err[256];
    CHECK(writer_write(w, "build/test_convert_json.abc", err, sizeof err) == 0, "%s", err);
    writer_free(w);
    CHECK(fills == 1 && frees == 1, "fill called once (%d), ctx freed once (%d)", fills, frees);
    size_t len;
    unsigned char *b = (unsigned char *)test_read_file("build/test_convert_json.abc", &len);
    CHECK(b != NULL, "output exists");
    if (!b) return;
    CHECK(memcmp(b, "ABCMODEL", 8) == 0 && rd32(b + 8) == 1 && rd32(b + 12) == 64 && rd64(b + 16) == len, "header");
    uint64_t mo = rd64(b + 24), ms = rd64(b + 32), dof = rd64(b + 40), ds = rd64(b + 48);
    CHECK(mo == 64 && dof == mo + ms && dof % 8 == 0 && rd32(b + 56) == 3 && rd32(b + 60) == 2, "sections");
    /* first metadata entry: "a.ints", i64 x2 */
    CHECK(rd32(b + mo) == 6 && rd32(b + mo + 4) == 1 && rd64(b + mo + 8) == 2 && memcmp(b + mo + 16, "a.ints\0\0", 8) == 0, "meta entry");
    CHECK((int64_t)rd64(b + mo + 24) == -3 && (int64_t)rd64(b + mo + 32) == (1LL << 40), "meta values");
    /* tensor entries */
    const unsigned char *e0 = b + dof, *e1 = e0 + 64 + 8;
    uint64_t off0 = rd64(e0 + 48), off1 = rd64(e1 + 48);
    CHECK(rd32(e0) == 5 && rd32(e0 + 4) == 0 && rd32(e0 + 8) == 2 && rd64(e0 + 16) == 2 && rd64(e0 + 24) == 3 && rd64(e0 + 32) == 1, "dir entry 0");
    CHECK(off0 % 64 == 0 && off1 % 64 == 0 && off0 >= dof + ds && rd64(e0 + 56) == 24 && rd64(e1 + 56) == 5, "offsets aligned");
    CHECK(off1 + 5 == len && memcmp(b + off0, data, 24) == 0 && b[off1] == 7 && b[off1 + 4] == 7, "tensor data");
    free(b);
    CHECK(temp_files_in_build() == 0, "no temp file left");
}

static void test_writer_errors(void) {
    abc_writer *w = writer_new();
    float data[4] = { 0 };
    int64_t shape[2] = { 2, 2 }, bad_shape[2] = { 2, -1 };
    CHECK(writer_add_tensor(w, "x", ABC_FILE_F32, 2, shape, data, sizeof data) == 0, "first");
    CHECK(writer_add_tensor(w, "x", ABC_FILE_F32, 2, shape, data, sizeof data) == -1 && strstr(writer_error(w), "duplicate"), "duplicate tensor");
    CHECK(writer_add_tensor(w, "y", ABC_FILE_F32, 2, shape, data, 15) == -1 && strstr(writer_error(w), "bytes"), "size mismatch");
    CHECK(writer_add_tensor(w, "y", ABC_FILE_F32, 0, shape, data, 16) == -1, "ndim 0");
    CHECK(writer_add_tensor(w, "y", ABC_FILE_F32, 5, shape, data, 16) == -1, "ndim 5");
    CHECK(writer_add_tensor(w, "y", ABC_FILE_F32, 2, bad_shape, data, 16) == -1, "negative dim");
    CHECK(writer_add_tensor(w, "y", 9, 2, shape, data, 16) == -1, "unknown dtype");
    CHECK(writer_add_tensor(w, "a b", ABC_FILE_F32, 2, shape, data, 16) == -1 && strstr(writer_error(w), "non-printable"), "bad name");
    CHECK(writer_add_tensor(w, "", ABC_FILE_F32, 2, shape, data, 16) == -1, "empty name");
    int64_t one = 1;
    CHECK(writer_add_i64(w, "k", &one, 1) == 0 && writer_add_str(w, "k", "v") == -1 && strstr(writer_error(w), "duplicate"), "duplicate key");
    CHECK(writer_add_i64(w, "k2", &one, 0) == -1, "empty array");
    frees = 0;
    CHECK(writer_add_tensor_fn(w, "x", ABC_FILE_U8, 1, &one, 1, fill_bytes, NULL, count_free) == -1 && frees == 1, "ctx freed on a failed add");
    CHECK(writer_add_tensor_fn(w, "z", ABC_FILE_U8, 1, &one, 1, fill_fails, NULL, count_free) == 0, "failing fill queued");
    /* a failed write leaves an existing file untouched and no temporary behind */
    FILE *f = fopen("build/test_convert_json.abc", "wb");
    fputs("old", f);
    fclose(f);
    char err[256] = "";
    CHECK(writer_write(w, "build/test_convert_json.abc", err, sizeof err) == -1 && strstr(err, "tensor z: source vanished"), "fill error: %s", err);
    size_t len;
    char *old = test_read_file("build/test_convert_json.abc", &len);
    CHECK(old && len == 3 && memcmp(old, "old", 3) == 0, "old file kept");
    free(old);
    CHECK(temp_files_in_build() == 0, "no temp file left");
    CHECK(writer_write(w, "build/no/such/dir/x.abc", err, sizeof err) == -1 && strstr(err, "cannot create"), "unwritable path: %s", err);
    writer_free(w);
    CHECK(frees == 2, "every ctx freed (%d)", frees);
    remove("build/test_convert_json.abc");
}

int main(void) {
    RUN_TEST(test_json_values);
    RUN_TEST(test_json_rejects);
    RUN_TEST(test_json_depth);
    RUN_TEST(test_json_truncations);
    RUN_TEST(test_json_fuzz);
    RUN_TEST(test_json_tokenizer_file);
    RUN_TEST(test_safetensors_valid);
    RUN_TEST(test_safetensors_fuzz);
    RUN_TEST(test_half_formats);
    RUN_TEST(test_writer_layout);
    RUN_TEST(test_writer_errors);
    return test_summary();
}
