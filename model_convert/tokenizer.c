/* tokenizer.json (Hugging Face tokenizers) → the tokenizer tensors and metadata of a .abc file
 * (FORMAT.md, "Tokenizer tensors"). Two kinds are recognised: Qwen2's byte-level BPE (a Split +
 * ByteLevel pre-tokenizer) and Llama-2-style SentencePiece BPE (no pre-tokenizer; normalizer
 * Prepend("▁") + Replace(" " → "▁"); byte fallback), as used by Phi-3 / Phi-3.5-V. Anything the
 * runtime would not reproduce exactly is refused with a message naming it. */
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

/* The split pattern of Qwen2's pre-tokenizer, the one abc.c's tokenizer section implements by hand. */
static const char QWEN2_SPLIT_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define MAX_VOCAB (1 << 24)

/* ---- small JSON helpers ---- */

static int is_string(const json_value *v, const char *s) {
    return v && v->type == JSON_STRING && v->string_len == strlen(s) && !memcmp(v->string, s, v->string_len);
}
/* An optional boolean option that must be `want` (absent or null counts as false). */
static int bool_is(const json_value *v, int want) {
    int value = v && v->type == JSON_BOOL ? v->boolean : 0;
    if (v && v->type != JSON_BOOL && v->type != JSON_NULL) return 0;
    return value == want;
}
/* An optional string option that must be empty (absent or null count as empty). */
static int empty_string(const json_value *v) {
    return !v || v->type == JSON_NULL || (v->type == JSON_STRING && v->string_len == 0);
}
static const char *type_of(const json_value *v) {
    const json_value *t = json_get(v, "type");
    return t && t->type == JSON_STRING ? t->string : "?";
}

/* ---- GPT-2 byte-level alphabet: byte b is written as the character byte_char(b) ---- */

/* Inverse table for code points below 512 (all byte characters are): byte, or -1. */
static void byte_level_inverse(int16_t inverse[512]) {
    for (int i = 0; i < 512; i++) inverse[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        inverse[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

/* Decodes the byte-level string s[0..n) into raw bytes (out has room for n bytes). */
static int byte_level_decode(const int16_t inverse[512], const char *s, size_t n, uint8_t *out, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (u[i] < 0x80) { cp = u[i]; i += 1; }
        else if ((u[i] & 0xE0) == 0xC0 && i + 1 < n) { cp = (uint32_t)(u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F); i += 2; }
        else return -1; /* every byte character is below U+0800 */
        if (cp >= 512 || inverse[cp] < 0) return -1;
        out[len++] = (uint8_t)inverse[cp];
    }
    *out_len = len;
    return 0;
}

/* ---- vocabulary: byte-level string → id, for the merges ---- */

typedef struct {
    const char *key;
    size_t len;
    int32_t id;
} vocab_slot;

typedef struct {
    vocab_slot *slots;
    size_t mask;
} vocab_map;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int vocab_map_init(vocab_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots ? 0 : -1;
}

static vocab_slot *vocab_map_slot(const vocab_map *m, const char *key, size_t len) {
    for (size_t h = hash_str(key, len) & m->mask;; h = (h + 1) & m->mask) {
        vocab_slot *s = &m->slots[h];
        if (!s->key || (s->len == len && !memcmp(s->key, key, len))) return s;
    }
}

static int32_t vocab_map_get(const vocab_map *m, const char *key, size_t len) {
    const vocab_slot *s = vocab_map_slot(m, key, len);
    return s->key ? s->id : -1;
}

/* ---- checks of the pipeline: only what the runtime implements is accepted ---- */

/* byte_fallback must be `byte_fallback` (SentencePiece models need it, byte-level ones refuse it). */
static int check_model(const json_value *model, int byte_fallback, char *err, size_t errsize) {
    if (!model || model->type != JSON_OBJECT) return cv_fail(err, errsize, "no \"model\" object");
    if (!is_string(json_get(model, "type"), "BPE"))
        return cv_fail(err, errsize, "model.type is \"%s\"; only BPE is supported", type_of(model));
    if (!bool_is(json_get(model, "byte_fallback"), byte_fallback))
        return cv_fail(err, errsize, byte_fallback ? "model.byte_fallback=false is not supported for SentencePiece BPE (no pre_tokenizer)"
                                                   : "model.byte_fallback=true is not supported");
    if (!bool_is(json_get(model, "ignore_merges"), 0)) return cv_fail(err, errsize, "model.ignore_merges=true is not supported");
    const json_value *dropout = json_get(model, "dropout");
    if (dropout && dropout->type != JSON_NULL && !(dropout->type == JSON_NUMBER && dropout->number == 0))
        return cv_fail(err, errsize, "model.dropout is not supported");
    if (!empty_string(json_get(model, "continuing_subword_prefix")) || !empty_string(json_get(model, "end_of_word_suffix")))
        return cv_fail(err, errsize, "model.continuing_subword_prefix / end_of_word_suffix are not supported");
    const json_value *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !vocab->n_items) return cv_fail(err, errsize, "model.vocab must be a non-empty object");
    if (!merges || merges->type != JSON_ARRAY || !merges->n_items) return cv_fail(err, errsize, "model.merges must be a non-empty array");
    return 0;
}

/* normalizer: NFC (or a Sequence holding only NFC) → "nfc"; null → "none". */
static int check_normalizer(const json_value *n, const char **name, char *err, size_t errsize) {
    if (!n || n->type == JSON_NULL) { *name = "none"; return 0; }
    if (is_string(json_get(n, "type"), "Sequence")) {
        const json_value *list = json_get(n, "normalizers");
        if (list && list->type == JSON_ARRAY && list->n_items == 1) n = &list->items[0];
        else if (list && list->type == JSON_ARRAY && list->n_items == 0) { *name = "none"; return 0; }
    }
    if (!is_string(json_get(n, "type"), "NFC"))
        return cv_fail(err, errsize, "normalizer \"%s\" is not supported (only NFC or none)", type_of(n));
    *name = "nfc";
    return 0;
}

static int check_pre_tokenizer(const json_value *p, char *err, size_t errsize) {
    const json_value *list = p ? json_get(p, "pretokenizers") : NULL;
    if (!p || !is_string(json_get(p, "type"), "Sequence") || !list || list->type != JSON_ARRAY || list->n_items != 2)
        return cv_fail(err, errsize, "pre_tokenizer must be Sequence[Split, ByteLevel] (Qwen2), not \"%s\"", p ? type_of(p) : "null");
    const json_value *split = &list->items[0], *bl = &list->items[1];
    const json_value *pattern = json_get(split, "pattern");
    if (!is_string(json_get(split, "type"), "Split") || !is_string(json_get(pattern, "Regex"), QWEN2_SPLIT_REGEX))
        return cv_fail(err, errsize, "pre_tokenizer: the first step must be Split with Qwen2's regex");
    if (!is_string(json_get(split, "behavior"), "Isolated") || !bool_is(json_get(split, "invert"), 0))
        return cv_fail(err, errsize, "pre_tokenizer: Split must have behavior Isolated and invert false");
    if (!is_string(json_get(bl, "type"), "ByteLevel") || !bool_is(json_get(bl, "add_prefix_space"), 0) ||
        !bool_is(json_get(bl, "use_regex"), 0))
        return cv_fail(err, errsize, "pre_tokenizer: the second step must be ByteLevel with add_prefix_space and use_regex false");
    return 0;
}

static int check_decoder_and_post(const json_value *root, char *err, size_t errsize) {
    const json_value *dec = json_get(root, "decoder");
    if (!dec || !is_string(json_get(dec, "type"), "ByteLevel"))
        return cv_fail(err, errsize, "decoder \"%s\" is not supported (only ByteLevel)", dec ? type_of(dec) : "null");
    /* The runtime adds no BOS/EOS: only post-processors that add nothing are accepted. */
    const json_value *post = json_get(root, "post_processor");
    if (post && post->type != JSON_NULL && !is_string(json_get(post, "type"), "ByteLevel"))
        return cv_fail(err, errsize, "post_processor \"%s\" is not supported (only ByteLevel or none)", type_of(post));
    return 0;
}

/* ---- conversion ---- */

typedef struct {
    uint8_t **bytes;     /* per id: raw bytes (NULL: no token) */
    size_t *len;
    int32_t n_vocab;
    vocab_map map;       /* byte-level vocab string → id */
    int32_t *added_ids, *added_special;
    size_t n_added;
    int32_t *merges;     /* [n_merges][3] */
    size_t n_merges;
    int32_t *added_strip; /* per added token: 1 lstrip | 2 rstrip */
    int any_strip;
    /* SentencePiece only */
    int sp;
    int32_t byte_fallback[256];
    int32_t *sp_chars;   /* [n_sp_chars][2] (code point, id) */
    size_t n_sp_chars;
    int64_t bos_id;
} tok_build;

static void tok_build_free(tok_build *b) {
    if (b->bytes)
        for (int32_t i = 0; i < b->n_vocab; i++) free(b->bytes[i]);
    free(b->bytes);
    free(b->len);
    free(b->map.slots);
    free(b->added_ids);
    free(b->added_special);
    free(b->merges);
    free(b->added_strip);
    free(b->sp_chars);
}

static int json_id(const json_value *v, int32_t *id) {
    int64_t x;
    if (!v || cv_json_int(v, 0, MAX_VOCAB - 1, &x) != 0) return -1;
    *id = (int32_t)x;
    return 0;
}

/* ---- SentencePiece BPE (Llama-2 / Phi-3) ---- */

static const char SP_SPACE_UTF8[] = "\xe2\x96\x81"; /* ▁ */

/* normalizer: exactly Sequence[Prepend("▁"), Replace(String " " → "▁")]. */
static int check_sp_normalizer(const json_value *n, char *err, size_t errsize) {
    const json_value *list = json_get(n, "normalizers");
    const json_value *prepend = NULL, *replace = NULL;
    if (is_string(json_get(n, "type"), "Sequence") && list && list->type == JSON_ARRAY && list->n_items == 2) {
        prepend = &list->items[0];
        replace = &list->items[1];
    }
    if (!prepend || !is_string(json_get(prepend, "type"), "Prepend") || !is_string(json_get(prepend, "prepend"), SP_SPACE_UTF8) ||
        !is_string(json_get(replace, "type"), "Replace") || !is_string(json_get(json_get(replace, "pattern"), "String"), " ") ||
        !is_string(json_get(replace, "content"), SP_SPACE_UTF8))
        return cv_fail(err, errsize, "normalizer \"%s\" is not supported with no pre_tokenizer (only Sequence[Prepend \"\u2581\", "
                       "Replace \" \" -> \"\u2581\"], SentencePiece BPE)", n && n->type != JSON_NULL ? type_of(n) : "null");
    return 0;
}

/* post_processor: null or TemplateProcessing whose `single` is [$A] or [special, $A] → BOS id or -1. */
static int check_sp_post(const json_value *post, int64_t *bos, char *err, size_t errsize) {
    *bos = -1;
    if (!post || post->type == JSON_NULL) return 0;
    const json_value *single = json_get(post, "single");
    if (!is_string(json_get(post, "type"), "TemplateProcessing") || !single || single->type != JSON_ARRAY || !single->n_items ||
        single->n_items > 2 || !json_get(&single->items[single->n_items - 1], "Sequence"))
        return cv_fail(err, errsize, "post_processor \"%s\" is not supported (only TemplateProcessing adding one token before $A, or none)",
                       type_of(post));
    if (single->n_items == 1) return 0;
    const json_value *sp = json_get(&single->items[0], "SpecialToken");
    const json_value *name = json_get(sp, "id");
    const json_value *tokens = json_get(post, "special_tokens");
    const json_value *entry = name && name->type == JSON_STRING && tokens ? json_get(tokens, name->string) : NULL;
    const json_value *ids = json_get(entry, "ids");
    if (!ids || ids->type != JSON_ARRAY || ids->n_items != 1 || cv_json_int(&ids->items[0], 0, MAX_VOCAB - 1, bos) != 0)
        return cv_fail(err, errsize, "post_processor: the token before $A must be a special token with exactly one id");
    return 0;
}

/* A token string whose stored bytes are the decoded text: "<0xNN>" → byte NN, "▁" → space. */
static int sp_byte_token(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
    if (!s[3] || !s[4] || !hi || !lo) return -1;
    return (int)(hi - hex) * 16 + (int)(lo - hex);
}

static void sp_decode(const char *s, size_t n, uint8_t *out, size_t *out_len) {
    int byte = sp_byte_token(s, n);
    if (byte >= 0) {
        out[0] = (uint8_t)byte;
        *out_len = 1;
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && !memcmp(s + i, SP_SPACE_UTF8, 3)) {
            out[len++] = ' ';
            i += 3;
        } else {
            out[len++] = (uint8_t)s[i++];
        }
    }
    *out_len = len;
}

/* The code point of s[0..n) if it is exactly one UTF-8 character, else -1. */
static int32_t single_char(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return -1;
    if (n == 1 && u[0] < 0x80) return u[0];
    size_t want = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 0;
    if (!n || want != n) return -1;
    uint32_t cp = u[0] & (0x7F >> want);
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) return -1;
        cp = cp << 6 | (u[i] & 0x3F);
    }
    return (int32_t)cp;
}

static int compare_chars(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* The initial-symbol tables: single-character tokens and the 256 byte-fallback tokens. */
static int sp_tables(tok_build *b, const json_value *vocab, char *err, size_t errsize) {
    for (int i = 0; i < 256; i++) b->byte_fallback[i] = -1;
    b->sp_chars = malloc(vocab->n_items * 2 * sizeof *b->sp_chars);
    if (!b->sp_chars) return cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; i < vocab->n_items; i++) {
        int32_t id = 0;
        if (json_id(&vocab->items[i], &id) != 0) return cv_fail(err, errsize, "model.vocab: bad id");
        int byte = sp_byte_token(vocab->keys[i], vocab->key_lens[i]);
        if (byte >= 0 && b->byte_fallback[byte] < 0) b->byte_fallback[byte] = id;
        int32_t cp = single_char(vocab->keys[i], vocab->key_lens[i]);
        if (cp >= 0) {
            b->sp_chars[2 * b->n_sp_chars] = cp;
            b->sp_chars[2 * b->n_sp_chars + 1] = id;
            b->n_sp_chars++;
        }
    }
    for (int i = 0; i < 256; i++)
        if (b->byte_fallback[i] < 0) return cv_fail(err, errsize, "model.vocab has no byte-fallback token <0x%02X>", i);
    if (!b->n_sp_chars) return cv_fail(err, errsize, "model.vocab has no single-character token");
    qsort(b->sp_chars, b->n_sp_chars, 2 * sizeof *b->sp_chars, compare_chars);
    return 0;
}

/* HF continues matching added tokens after the token itself, not after the whitespace rstrip
 * swallowed; the runtime resumes after it. Both agree unless an added token starts with whitespace. */
static int check_strip(const tok_build *b, char *err, size_t errsize) {
    if (!b->any_strip) return 0;
    for (size_t i = 0; i < b->n_added; i++) {
        const uint8_t *t = b->bytes[b->added_ids[i]];
        size_t len = b->len[b->added_ids[i]], first = t[0] < 0x80 ? 1 : t[0] >= 0xF0 ? 4 : t[0] >= 0xE0 ? 3 : 2;
        int32_t cp = single_char((const char *)t, first < len ? first : len);
        if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
            cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
            return cv_fail(err, errsize, "added token %d starts with whitespace while tokens strip whitespace: not supported", b->added_ids[i]);
    }
    return 0;
}

/* Sizes the id space: the largest id of the vocab and the added tokens, plus one. */
static int count_ids(tok_build *b, const json_value *vocab, const json_value *added, char *err, size_t errsize) {
    int32_t max_id = -1, id;
    for (size_t i = 0; i < vocab->n_items; i++) {
        if (json_id(&vocab->items[i], &id) != 0)
            return cv_fail(err, errsize, "model.vocab[\"%.40s\"]: id must be an integer in [0, %d)", vocab->keys[i], MAX_VOCAB);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; added && i < added->n_items; i++) {
        if (json_id(json_get(&added->items[i], "id"), &id) != 0)
            return cv_fail(err, errsize, "added_tokens[%zu]: bad id", i);
        if (id > max_id) max_id = id;
    }
    b->n_vocab = max_id + 1;
    b->bytes = calloc((size_t)b->n_vocab, sizeof *b->bytes);
    b->len = calloc((size_t)b->n_vocab, sizeof *b->len);
    if (!b->bytes || !b->len || vocab_map_init(&b->map, vocab->n_items) != 0) return cv_fail(err, errsize, "out of memory");
    return 0;
}

static int read_vocab(tok_build *b, const json_value *vocab, char *err, size_t errsize) {
    int16_t inverse[512];
    byte_level_inverse(inverse);
    for (size_t i = 0; i < vocab->n_items; i++) {
        int32_t id = 0;
        if (json_id(&vocab->items[i], &id) != 0) return cv_fail(err, errsize, "model.vocab: bad id");
        const char *key = vocab->keys[i];
        size_t key_len = vocab->key_lens[i];
        if (b->bytes[id]) return cv_fail(err, errsize, "model.vocab: id %d is used twice", id);
        uint8_t *raw = malloc(key_len ? key_len : 1);
        if (!raw) return cv_fail(err, errsize, "out of memory");
        b->bytes[id] = raw;
        if (key_len == 0) return cv_fail(err, errsize, "model.vocab: id %d is an empty string", id);
        if (b->sp) sp_decode(key, key_len, raw, &b->len[id]);
        else if (byte_level_decode(inverse, key, key_len, raw, &b->len[id]) != 0)
            return cv_fail(err, errsize, "model.vocab: token \"%.40s\" (id %d) is not a byte-level string", key, id);
        vocab_slot *slot = vocab_map_slot(&b->map, key, key_len);
        *slot = (vocab_slot){key, key_len, id};
    }
    return 0;
}

static int read_added(tok_build *b, const json_value *added, char *err, size_t errsize) {
    size_t n = added ? added->n_items : 0;
    b->added_ids = calloc(n ? n : 1, sizeof *b->added_ids);
    b->added_special = calloc(n ? n : 1, sizeof *b->added_special);
    b->added_strip = calloc(n ? n : 1, sizeof *b->added_strip);
    if (!b->added_ids || !b->added_special || !b->added_strip) return cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_value *t = &added->items[i], *content = json_get(t, "content");
        int32_t id = 0;
        if (json_id(json_get(t, "id"), &id) != 0) return cv_fail(err, errsize, "added_tokens[%zu]: bad id", i);
        if (!content || content->type != JSON_STRING || content->string_len == 0)
            return cv_fail(err, errsize, "added_tokens[%zu]: no content", i);
        /* The runtime implements lstrip/rstrip; byte-level conversion keeps refusing them (no model needs them). */
        static const char *const must_be_false[] = {"single_word", "normalized", "lstrip", "rstrip"};
        size_t n_checked = b->sp ? 2 : 4;
        for (size_t k = 0; k < n_checked; k++)
            if (!bool_is(json_get(t, must_be_false[k]), 0))
                return cv_fail(err, errsize, "added token \"%.40s\": %s=true is not supported", content->string, must_be_false[k]);
        if (b->bytes[id]) {
            /* Already a vocabulary token: HF reuses it when the text is the same. */
            if (b->len[id] != content->string_len || memcmp(b->bytes[id], content->string, b->len[id]))
                return cv_fail(err, errsize, "added token \"%.40s\": id %d already names another token", content->string, id);
            for (size_t j = 0; j < i; j++)
                if (b->added_ids[j] == id) return cv_fail(err, errsize, "added_tokens: id %d appears twice", id);
        } else {
            b->bytes[id] = malloc(content->string_len);
            if (!b->bytes[id]) return cv_fail(err, errsize, "out of memory");
            memcpy(b->bytes[id], content->string, content->string_len);
            b->len[id] = content->string_len;
        }
        const json_value *special = json_get(t, "special");
        b->added_ids[i] = id;
        b->added_special[i] = special && special->type == JSON_BOOL && special->boolean;
        const json_value *lstrip = json_get(t, "lstrip"), *rstrip = json_get(t, "rstrip");
        if ((lstrip && lstrip->type != JSON_BOOL && lstrip->type != JSON_NULL) || (rstrip && rstrip->type != JSON_BOOL && rstrip->type != JSON_NULL))
            return cv_fail(err, errsize, "added token \"%.40s\": lstrip/rstrip must be booleans", content->string);
        b->added_strip[i] = (!bool_is(lstrip, 0) ? 1 : 0) | (!bool_is(rstrip, 0) ? 2 : 0);
        b->any_strip |= b->added_strip[i] != 0;
    }
    b->n_added = n;
    return 0;
}

/* One merge, "left right" or ["left", "right"], as ids (left, right, merged). */
static int read_merge(tok_build *b, const json_value *m, size_t r, int32_t out[3], char *err, size_t errsize) {
    const char *part[2];
    size_t part_len[2];
    if (m->type == JSON_STRING) {
        const char *space = memchr(m->string, ' ', m->string_len);
        if (!space || memchr(space + 1, ' ', m->string_len - (size_t)(space + 1 - m->string)))
            return cv_fail(err, errsize, "model.merges[%zu]: \"%.40s\" is not two tokens separated by one space", r, m->string);
        part[0] = m->string;
        part_len[0] = (size_t)(space - m->string);
        part[1] = space + 1;
        part_len[1] = m->string_len - part_len[0] - 1;
    } else if (m->type == JSON_ARRAY && m->n_items == 2 && m->items[0].type == JSON_STRING && m->items[1].type == JSON_STRING) {
        for (int k = 0; k < 2; k++) {
            part[k] = m->items[k].string;
            part_len[k] = m->items[k].string_len;
        }
    } else {
        return cv_fail(err, errsize, "model.merges[%zu]: must be a string or a pair of strings", r);
    }
    for (int k = 0; k < 2; k++) {
        out[k] = vocab_map_get(&b->map, part[k], part_len[k]);
        if (out[k] < 0) return cv_fail(err, errsize, "model.merges[%zu]: \"%.*s\" is not in the vocabulary", r, (int)(part_len[k] > 40 ? 40 : part_len[k]), part[k]);
    }
    char *joined = malloc(part_len[0] + part_len[1] + 1);
    if (!joined) return cv_fail(err, errsize, "out of memory");
    memcpy(joined, part[0], part_len[0]);
    memcpy(joined + part_len[0], part[1], part_len[1]);
    out[2] = vocab_map_get(&b->map, joined, part_len[0] + part_len[1]);
    free(joined);
    if (out[2] < 0) return cv_fail(err, errsize, "model.merges[%zu]: the merged token is not in the vocabulary", r);
    return 0;
}

static int read_merges(tok_build *b, const json_value *merges, char *err, size_t errsize) {
    if (merges->n_items > INT32_MAX / 4) return cv_fail(err, errsize, "model.merges: too many merges");
    b->merges = malloc(merges->n_items * 3 * sizeof *b->merges);
    if (!b->merges) return cv_fail(err, errsize, "out of memory");
    for (size_t r = 0; r < merges->n_items; r++)
        if (read_merge(b, &merges->items[r], r, b->merges + 3 * r, err, errsize) != 0) return -1;
    b->n_merges = merges->n_items;
    return 0;
}

static int write_tensors(const tok_build *b, abc_writer *w, char *err, size_t errsize) {
    size_t total = 0;
    for (int32_t i = 0; i < b->n_vocab; i++) total += b->len[i];
    if (total == 0 || total > INT32_MAX) return cv_fail(err, errsize, "vocabulary of %zu bytes is not supported", total);
    uint8_t *bytes = malloc(total);
    int32_t *offsets = malloc(((size_t)b->n_vocab + 1) * sizeof *offsets);
    int rc = -1;
    if (!bytes || !offsets) { cv_fail(err, errsize, "out of memory"); goto done; }
    size_t pos = 0;
    for (int32_t i = 0; i < b->n_vocab; i++) {
        offsets[i] = (int32_t)pos;
        if (b->len[i]) memcpy(bytes + pos, b->bytes[i], b->len[i]);
        pos += b->len[i];
    }
    offsets[b->n_vocab] = (int32_t)pos;
    int64_t shape_bytes[1] = {(int64_t)total}, shape_offsets[1] = {(int64_t)b->n_vocab + 1};
    int64_t shape_merges[2] = {(int64_t)b->n_merges, 3}, shape_added[1] = {(int64_t)b->n_added};
    if (writer_add_tensor(w, "tokenizer.vocab.bytes", ABC_FILE_U8, 1, shape_bytes, bytes, total) != 0 ||
        writer_add_tensor(w, "tokenizer.vocab.offsets", ABC_FILE_I32, 1, shape_offsets, offsets, ((size_t)b->n_vocab + 1) * 4) != 0 ||
        writer_add_tensor(w, "tokenizer.merges", ABC_FILE_I32, 2, shape_merges, b->merges, b->n_merges * 12) != 0 ||
        /* A tokenizer without added tokens has no tokenizer.added.* tensors (shapes cannot be 0). */
        (b->n_added && (writer_add_tensor(w, "tokenizer.added.ids", ABC_FILE_I32, 1, shape_added, b->added_ids, b->n_added * 4) != 0 ||
                        writer_add_tensor(w, "tokenizer.added.special", ABC_FILE_I32, 1, shape_added, b->added_special, b->n_added * 4) != 0))) {
        cv_fail(err, errsize, "%s", writer_error(w));
        goto done;
    }
    int64_t shape_bf[1] = {256}, shape_chars[2] = {(int64_t)b->n_sp_chars, 2};
    if ((b->any_strip &&
         writer_add_tensor(w, "tokenizer.added.strip", ABC_FILE_I32, 1, shape_added, b->added_strip, b->n_added * 4) != 0) ||
        (b->sp && (writer_add_tensor(w, "tokenizer.byte_fallback", ABC_FILE_I32, 1, shape_bf, b->byte_fallback, 256 * 4) != 0 ||
                   writer_add_tensor(w, "tokenizer.sp.chars", ABC_FILE_I32, 2, shape_chars, b->sp_chars, b->n_sp_chars * 8) != 0))) {
        cv_fail(err, errsize, "%s", writer_error(w));
        goto done;
    }
    rc = 0;
done:
    free(bytes);
    free(offsets);
    return rc;
}

int tokenizer_convert(const char *tokenizer_json_path, abc_writer *w, char *err, size_t errsize) {
    json_value *root = cv_read_json(tokenizer_json_path, err, errsize);
    if (!root) return -1;
    tok_build b;
    memset(&b, 0, sizeof b);
    const char *normalizer = NULL;
    const json_value *model = json_get(root, "model");
    const json_value *added = json_get(root, "added_tokens");
    const json_value *pre = json_get(root, "pre_tokenizer");
    int rc = -1;
    if (root->type != JSON_OBJECT) { cv_fail(err, errsize, "not a JSON object"); goto done; }
    if (added && added->type == JSON_NULL) added = NULL;
    if (added && added->type != JSON_ARRAY) { cv_fail(err, errsize, "added_tokens must be an array"); goto done; }
    /* No pre-tokenizer: SentencePiece BPE (the whole normalized text is one word); else Qwen2's. */
    b.sp = !pre || pre->type == JSON_NULL;
    if (b.sp) {
        normalizer = "prepend_replace";
        if (check_model(model, 1, err, errsize) != 0 || check_sp_normalizer(json_get(root, "normalizer"), err, errsize) != 0 ||
            check_sp_post(json_get(root, "post_processor"), &b.bos_id, err, errsize) != 0)
            goto done;
    } else if (check_model(model, 0, err, errsize) != 0 || check_normalizer(json_get(root, "normalizer"), &normalizer, err, errsize) != 0 ||
               check_pre_tokenizer(pre, err, errsize) != 0 || check_decoder_and_post(root, err, errsize) != 0) {
        goto done;
    }
    const json_value *vocab = json_get(model, "vocab");
    if (count_ids(&b, vocab, added, err, errsize) != 0 || read_vocab(&b, vocab, err, errsize) != 0 ||
        (b.sp && sp_tables(&b, vocab, err, errsize) != 0) || read_added(&b, added, err, errsize) != 0 ||
        check_strip(&b, err, errsize) != 0 || read_merges(&b, json_get(model, "merges"), err, errsize) != 0)
        goto done;
    if (b.bos_id >= b.n_vocab || (b.bos_id >= 0 && !b.len[b.bos_id])) {
        cv_fail(err, errsize, "post_processor: token id %lld is not in the vocabulary", (long long)b.bos_id);
        goto done;
    }
    if (write_tensors(&b, w, err, errsize) != 0) goto done;
    if (writer_add_str(w, "tokenizer.model", b.sp ? "bpe_sentencepiece" : "bpe_byte_level") != 0 ||
        writer_add_str(w, "tokenizer.normalizer", normalizer) != 0 ||
        writer_add_str(w, "tokenizer.pretokenizer", b.sp ? "none" : "qwen2") != 0 ||
        (b.sp && writer_add_i64(w, "tokenizer.bos_id", &b.bos_id, 1) != 0)) {
        cv_fail(err, errsize, "%s", writer_error(w));
        goto done;
    }
    rc = 0;
done:
    tok_build_free(&b);
    json_free(root);
    return rc;
}
