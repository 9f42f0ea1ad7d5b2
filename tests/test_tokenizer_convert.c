/* The converter's tokenizer part (model_convert/tokenizer.c): a small byte-level tokenizer.json is
 * converted and its tensors checked; every unsupported or malformed part is refused with a message
 * naming it. (The real Qwen2 tokenizer.json goes through abc-convert in tests/test_tokenizer.c.) */
#define _POSIX_C_SOURCE 200809L
#include "../model_convert/json.c"
#include "../model_convert/tokenizer.c"
#include "../model_convert/util.c"
#include "../model_convert/writer.c"

#include <stdbool.h>
#include <unistd.h>

#include "test.h"

static char tmp_json[64] = "/tmp/abc_tok_XXXXXX";
static char tmp_abc[80];

/* 256 byte-level single characters: "!".."~", "¡".."¬", "®".."ÿ", then U+0100.. for the rest. */
static void byte_char(int b, char *out) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = b;
    if (!printable) {
        int extra = 0;
        for (int k = 0; k < b; k++)
            if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) extra++;
        cp = 256 + extra;
    }
    if (cp == '"' || cp == '\\') sprintf(out, "\\%c", cp);
    else if (cp < 0x80) sprintf(out, "%c", cp);
    else sprintf(out, "%c%c", 0xC0 | cp >> 6, 0x80 | (cp & 0x3F));
}

static const char *REGEX =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* A tokenizer.json: the 256 bytes, "Ġt" (id 256), "he" (257), "Ġthe" (258, from "Ġt" + "he"); the
 * parts given override the Qwen2 defaults. */
static char *make_json(const char *normalizer, const char *pre, const char *model_extra, const char *merges,
                       const char *added, const char *extra_vocab) {
    size_t cap = 1 << 16;
    char *j = malloc(cap);
    size_t n = 0;
    n += (size_t)snprintf(j + n, cap - n, "{\"version\":\"1.0\",\"added_tokens\":%s,", added);
    n += (size_t)snprintf(j + n, cap - n, "\"normalizer\":%s,", normalizer);
    if (pre)
        n += (size_t)snprintf(j + n, cap - n, "\"pre_tokenizer\":%s,", pre);
    else
        n += (size_t)snprintf(j + n, cap - n,
                              "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
                              "{\"Regex\":\"%s\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
                              "\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]},",
                              REGEX);
    n += (size_t)snprintf(j + n, cap - n,
                          "\"post_processor\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
                          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"byte_fallback\":false%s,\"vocab\":{",
                          model_extra);
    for (int b = 0; b < 256; b++) {
        char c[8];
        byte_char(b, c);
        n += (size_t)snprintf(j + n, cap - n, "\"%s\":%d,", c, b);
    }
    n += (size_t)snprintf(j + n, cap - n, "\"\xc4\xa0t\":256,\"he\":257,\"\xc4\xa0the\":258%s},\"merges\":%s}}", extra_vocab,
                          merges);
    return j;
}

static const char *DEFAULT_MERGES = "[\"\xc4\xa0 t\",[\"h\",\"e\"],\"\xc4\xa0t he\"]";
static const char *DEFAULT_ADDED =
    "[{\"id\":259,\"content\":\"<|end|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]";

static int convert(const char *json, char *err, size_t errsize, abc_writer **out) {
    FILE *f = fopen(tmp_json, "wb");
    fputs(json, f);
    fclose(f);
    abc_writer *w = writer_new();
    int rc = tokenizer_convert(tmp_json, w, err, errsize);
    if (out && rc == 0) *out = w;
    else writer_free(w);
    return rc;
}

static void expect_error(const char *json, const char *fragment) {
    char err[512] = "";
    int rc = convert(json, err, sizeof err, NULL);
    CHECK(rc != 0, "accepted, expected an error with '%s'", fragment);
    CHECK(strstr(err, fragment) != NULL, "message '%s' lacks '%s'", err, fragment);
}

/* The tensor `name` from a written file (a tiny reader of FORMAT.md's layout). */
static const uint8_t *find_tensor(const uint8_t *file, size_t size, const char *name, uint64_t shape[4], uint32_t *dtype) {
    uint64_t dir_off, dir_size;
    uint32_t n_tensors;
    memcpy(&dir_off, file + 40, 8);
    memcpy(&dir_size, file + 48, 8);
    memcpy(&n_tensors, file + 60, 4);
    size_t pos = dir_off;
    for (uint32_t i = 0; i < n_tensors && pos + 64 <= size; i++) {
        uint32_t name_len;
        uint64_t off, nbytes;
        memcpy(&name_len, file + pos, 4);
        memcpy(dtype, file + pos + 4, 4);
        memcpy(shape, file + pos + 16, 32);
        memcpy(&off, file + pos + 48, 8);
        memcpy(&nbytes, file + pos + 56, 8);
        if (name_len == strlen(name) && !memcmp(file + pos + 64, name, name_len)) return file + off;
        pos += 64 + ((name_len + 7) & ~7u);
    }
    return NULL;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(hay + i, needle, k)) return true;
    return false;
}

static void test_valid(void) {
    char err[512] = "";
    char *json = make_json("{\"type\":\"NFC\"}", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, "");
    abc_writer *w = NULL;
    CHECK(convert(json, err, sizeof err, &w) == 0, "%s", err);
    free(json);
    if (!w) return;
    CHECK(writer_write(w, tmp_abc, err, sizeof err) == 0, "%s", err);
    writer_free(w);
    FILE *f = fopen(tmp_abc, "rb");
    CHECK(f != NULL, "written file");
    if (!f) return;
    static uint8_t file[1 << 16];
    size_t size = fread(file, 1, sizeof file, f);
    fclose(f);
    uint64_t shape[4];
    uint32_t dtype;
    const uint8_t *offsets = find_tensor(file, size, "tokenizer.vocab.offsets", shape, &dtype);
    CHECK(offsets && dtype == 3 && shape[0] == 261, "offsets: 260 tokens + 1");
    const uint8_t *bytes = find_tensor(file, size, "tokenizer.vocab.bytes", shape, &dtype);
    CHECK(bytes && dtype == 4 && shape[0] == 256 + 2 + 2 + 4 + 7, "bytes: %llu", (unsigned long long)shape[0]);
    if (offsets && bytes) {
        int32_t o[261];
        memcpy(o, offsets, sizeof o);
        for (int b = 0; b < 256; b++) CHECK(o[b] == b && bytes[b] == b, "byte token %d", b);
        CHECK(o[257] - o[256] == 2 && !memcmp(bytes + o[256], " t", 2), "\"\xc4\xa0t\" is \" t\"");
        CHECK(o[259] - o[258] == 4 && !memcmp(bytes + o[258], " the", 4), "\" the\"");
        CHECK(o[260] - o[259] == 7 && !memcmp(bytes + o[259], "<|end|>", 7), "added token text is raw");
    }
    const uint8_t *merges = find_tensor(file, size, "tokenizer.merges", shape, &dtype);
    CHECK(merges && dtype == 3 && shape[0] == 3 && shape[1] == 3, "merges shape");
    if (merges) {
        int32_t m[9];
        memcpy(m, merges, sizeof m);
        CHECK(m[0] == ' ' && m[1] == 't' && m[2] == 256, "merge 0");
        CHECK(m[3] == 'h' && m[4] == 'e' && m[5] == 257, "merge 1 (pair form)");
        CHECK(m[6] == 256 && m[7] == 257 && m[8] == 258, "merge 2");
    }
    const uint8_t *ids = find_tensor(file, size, "tokenizer.added.ids", shape, &dtype);
    const uint8_t *special = find_tensor(file, size, "tokenizer.added.special", shape, &dtype);
    CHECK(ids && special && shape[0] == 1, "added tensors");
    if (ids && special) {
        int32_t id, sp;
        memcpy(&id, ids, 4);
        memcpy(&sp, special, 4);
        CHECK(id == 259 && sp == 1, "added token 259 special");
    }
    CHECK(contains(file, size, "tokenizer.normalizer") && contains(file, size, "bpe_byte_level") &&
              contains(file, size, "qwen2"),
          "metadata");
    unlink(tmp_abc);

    /* Variants that are accepted: no normalizer, no added tokens, null options. */
    json = make_json("null", NULL, ",\"ignore_merges\":false,\"continuing_subword_prefix\":\"\"", DEFAULT_MERGES, "[]", "");
    CHECK(convert(json, err, sizeof err, NULL) == 0, "%s", err);
    free(json);
    json = make_json("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}", NULL, "", DEFAULT_MERGES, "[]", "");
    CHECK(convert(json, err, sizeof err, NULL) == 0, "%s", err);
    free(json);
}

static void test_refused(void) {
    char *j;
#define REFUSE(expr, fragment) (j = (expr), expect_error(j, fragment), free(j))
    REFUSE(make_json("{\"type\":\"NFKC\"}", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, ""), "normalizer \"NFKC\"");
    REFUSE(make_json("null", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false}", "", DEFAULT_MERGES, DEFAULT_ADDED, ""),
           "pre_tokenizer");
    REFUSE(make_json("null",
                     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},"
                     "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}",
                     "", DEFAULT_MERGES, DEFAULT_ADDED, ""),
           "Qwen2's regex");
    REFUSE(make_json("null", NULL, ",\"byte_fallback\":true", DEFAULT_MERGES, DEFAULT_ADDED, ""), "byte_fallback");
    REFUSE(make_json("null", NULL, ",\"ignore_merges\":true", DEFAULT_MERGES, DEFAULT_ADDED, ""), "ignore_merges");
    REFUSE(make_json("null", NULL, ",\"continuing_subword_prefix\":\"##\"", DEFAULT_MERGES, DEFAULT_ADDED, ""),
           "continuing_subword_prefix");
    REFUSE(make_json("null", NULL, "", "[\"\xc4\xa0 q\"]", DEFAULT_ADDED, ""), "model.merges[0]");
    REFUSE(make_json("null", NULL, "", "[\"h e x\"]", DEFAULT_ADDED, ""), "one space");
    REFUSE(make_json("null", NULL, "", "[\"t h\"]", DEFAULT_ADDED, ""), "merged token is not in the vocabulary");
    REFUSE(make_json("null", NULL, "", "[42]", DEFAULT_ADDED, ""), "string or a pair");
    REFUSE(make_json("null", NULL, "", "[]", DEFAULT_ADDED, ""), "non-empty");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, ",\"a\xe4\xb8\xad\":300"), "not a byte-level string");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, ",\"zz\":-1"), "id must be an integer");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, ",\"zz\":257"), "id 257 is used twice");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES,
                     "[{\"id\":259,\"content\":\"<x>\",\"lstrip\":true,\"normalized\":false,\"special\":true}]", ""),
           "lstrip=true");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, "[{\"id\":259,\"content\":\"<x>\",\"normalized\":true}]", ""),
           "normalized=true");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, "[{\"id\":257,\"content\":\"<x>\",\"normalized\":false}]", ""),
           "already names another token");
    REFUSE(make_json("null", NULL, "", DEFAULT_MERGES, "[{\"id\":259,\"content\":\"\"}]", ""), "no content");
#undef REFUSE
    char *json = make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, "");
    char *p = strstr(json, "\"type\":\"BPE\"");
    memcpy(p, "\"type\":\"WPC\"", 12);
    expect_error(json, "only BPE");
    free(json);
    json = make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, "");
    p = strstr(json, "\"decoder\":{\"type\":\"ByteLevel\"}");
    memcpy(p, "\"decoder\":{\"type\":\"Metaspace\"}", 30);
    expect_error(json, "decoder \"Metaspace\"");
    free(json);
    json = make_json("null", NULL, "", DEFAULT_MERGES, DEFAULT_ADDED, "");
    p = strstr(json, "\"post_processor\":{\"type\":\"ByteLevel\"}");
    memcpy(p, "\"post_processor\":{\"type\":\"BertLevel\"}", 37);
    expect_error(json, "post_processor");
    free(json);
    char err[256];
    abc_writer *w = writer_new();
    CHECK(tokenizer_convert("/nonexistent/tokenizer.json", w, err, sizeof err) != 0 && strstr(err, "/nonexistent"), "missing file");
    writer_free(w);
}

/* ---- SentencePiece BPE (Phi-3.5-V's Llama-2 tokenizer) ---- */

#define PHI_JSON "tests/fixtures/phi35v-tiny/tokenizer.json"
/* The converted tokenizer tensors alone, which tests/test_tokenizer.c loads; this test checks that
 * the converter still writes exactly this file (ABC_REGEN=1 rewrites it). */
#define PHI_ABC "tests/fixtures/phi35v-tiny/tokenizer.abc"

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    *size = p ? fread(p, 1, (size_t)n, f) : 0;
    fclose(f);
    return p;
}

static void test_sentencepiece(void) {
    char err[512] = "";
    abc_writer *w = writer_new();
    CHECK(tokenizer_convert(PHI_JSON, w, err, sizeof err) == 0, "%s", err);
    CHECK(writer_write(w, tmp_abc, err, sizeof err) == 0, "%s", err);
    writer_free(w);
    size_t size = 0, want_size = 0;
    uint8_t *file = read_all(tmp_abc, &size);
    CHECK(file != NULL && size > 100000, "written file");
    if (!file) return;
    uint64_t shape[4];
    uint32_t dtype;
    const int32_t *bf = (const int32_t *)find_tensor(file, size, "tokenizer.byte_fallback", shape, &dtype);
    CHECK(bf && dtype == ABC_FILE_I32 && shape[0] == 256 && bf[0] == 3 && bf[0x0A] == 13 && bf[0xFF] == 258, "byte fallback ids");
    const int32_t *chars = (const int32_t *)find_tensor(file, size, "tokenizer.sp.chars", shape, &dtype);
    CHECK(chars && shape[1] == 2 && shape[0] > 1000, "single-character tokens");
    bool found_space = false, sorted = true;
    for (uint64_t i = 0; chars && i < shape[0]; i++) {
        if (chars[2 * i] == 0x2581) found_space = chars[2 * i + 1] == 29871;
        if (i && chars[2 * i] <= chars[2 * i - 2]) sorted = false;
    }
    CHECK(found_space && sorted, "▁ is 29871, code points sorted");
    const int32_t *strip = (const int32_t *)find_tensor(file, size, "tokenizer.added.strip", shape, &dtype);
    const int32_t *ids = (const int32_t *)find_tensor(file, size, "tokenizer.added.ids", shape, &dtype);
    CHECK(strip && ids && shape[0] == 14, "added tokens with strip flags");
    for (uint64_t i = 0; strip && ids && i < shape[0]; i++)
        CHECK(strip[i] == (ids[i] >= 32001 ? 2 : 0), "token %d strip %d", ids[i], strip[i]);
    const int32_t *off = (const int32_t *)find_tensor(file, size, "tokenizer.vocab.offsets", shape, &dtype);
    const uint8_t *bytes = find_tensor(file, size, "tokenizer.vocab.bytes", shape, &dtype);
    /* 278 = "▁the" is stored decoded as " the"; 13 = <0x0A> as "\n". */
    CHECK(off && bytes && off[279] - off[278] == 4 && !memcmp(bytes + off[278], " the", 4), "decoded ▁the");
    CHECK(off && bytes && off[14] - off[13] == 1 && bytes[off[13]] == '\n', "decoded <0x0A>");
    CHECK(contains(file, size, "bpe_sentencepiece") && contains(file, size, "prepend_replace") &&
          contains(file, size, "tokenizer.bos_id"), "metadata");
    if (getenv("ABC_REGEN")) {
        FILE *f = fopen(PHI_ABC, "wb");
        CHECK(f && fwrite(file, 1, size, f) == size, "regenerating " PHI_ABC);
        if (f) fclose(f);
    }
    uint8_t *want = read_all(PHI_ABC, &want_size);
    CHECK(want && want_size == size && !memcmp(want, file, size), PHI_ABC " is what the converter writes (ABC_REGEN=1 updates it)");
    free(want);
    free(file);
    unlink(tmp_abc);
}

/* The real file with one part replaced: `from` (which must occur) → `to`. */
static char *phi_json_with(const char *from, const char *to) {
    size_t n;
    char *src = (char *)read_all(PHI_JSON, &n);
    if (!src) return NULL;
    src = realloc(src, n + 1);
    src[n] = 0;
    char *p = strstr(src, from);
    CHECK(p != NULL, "'%s' occurs in the fixture", from);
    if (!p) { free(src); return NULL; }
    size_t a = strlen(from), b = strlen(to);
    char *out = malloc(n - a + b + 1);
    memcpy(out, src, (size_t)(p - src));
    memcpy(out + (p - src), to, b);
    memcpy(out + (p - src) + b, p + a, n - (size_t)(p - src) - a + 1);
    free(src);
    return out;
}

static void test_sentencepiece_refused(void) {
    char *j;
#define SP_REFUSE(from, to, fragment) (j = phi_json_with(from, to), j ? (expect_error(j, fragment), free(j)) : (void)0)
    SP_REFUSE("\"byte_fallback\": true", "\"byte_fallback\": false", "byte_fallback=false");
    SP_REFUSE("\"byte_fallback\": true", "\"byte_fallback\": true, \"ignore_merges\": true", "ignore_merges");
    SP_REFUSE("{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}", "{\"type\": \"Prepend\", \"prepend\": \"x\"}", "normalizer");
    SP_REFUSE("\"pattern\": {\"String\": \" \"}", "\"pattern\": {\"Regex\": \" \"}", "normalizer");
    SP_REFUSE("\"normalizer\": {", "\"normalizer\": null, \"x\": {", "normalizer \"null\"");
    SP_REFUSE("\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]",
              "\"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}]",
              "post_processor");
    SP_REFUSE("\"<0x41>\": 68", "\"<0x4l>\": 68", "<0x41>");
    SP_REFUSE("\"content\": \"<|user|>\", \"single_word\": false", "\"content\": \"<|user|>\", \"single_word\": true", "single_word");
    SP_REFUSE("\"content\": \"<|user|>\"", "\"content\": \" <|user|>\"", "starts with whitespace");
#undef SP_REFUSE
}

int main(void) {
    int fd = mkstemp(tmp_json);
    if (fd < 0) return 1;
    close(fd);
    snprintf(tmp_abc, sizeof tmp_abc, "%s.abc", tmp_json);
    RUN_TEST(test_valid);
    RUN_TEST(test_refused);
    RUN_TEST(test_sentencepiece);
    RUN_TEST(test_sentencepiece_refused);
    unlink(tmp_json);
    return test_summary();
}
