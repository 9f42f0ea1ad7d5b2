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

int main(void) {
    int fd = mkstemp(tmp_json);
    if (fd < 0) return 1;
    close(fd);
    snprintf(tmp_abc, sizeof tmp_abc, "%s.abc", tmp_json);
    RUN_TEST(test_valid);
    RUN_TEST(test_refused);
    unlink(tmp_json);
    return test_summary();
}
