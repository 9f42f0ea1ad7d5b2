/* Tokenizer tests: the fixture's ids (made by Hugging Face tokenizers), the prompts of every
 * manifest case against input_ids.npy, a corpus of ~5000 strings (tests/gen_tokenizer_corpus.js),
 * NFC against Unicode's NormalizationTest (tests/gen_nfc_cases.py), the pre-tokenizer's regex
 * semantics by hand, malformed tokenizer tensors, invalid UTF-8, allocation failures, threads and
 * large inputs. Needs build/tiny-vlm2vec.abc (made by `make test`). */
#include "../abc.c"

#include <time.h>

#include "npy.h"
#include "test.h"

#define TINY_MODEL "build/tiny-vlm2vec.abc"
#define FIXTURE_DIR "tests/fixtures/qwen2vl-tiny"

static weight_file g_wf;
static tokenizer *g_tok;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}


/* ---- a small JSON reader, just enough for the fixture files ---- */

typedef struct tj_value tj_value;
struct tj_value {
    char type;           /* 's' string, 'n' number, 'a' array, 'o' object, 'b' bool, 'z' null */
    char *str;           /* string (UTF-8, may hold NUL) */
    size_t len;
    double num;
    tj_value *items;     /* array items / object values */
    char **keys;         /* object keys */
    size_t n;
};

typedef struct {
    const char *p, *end;
    int depth;
} tj_parser;

static void tj_free(tj_value *v) {
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        tj_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

static void tj_ws(tj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) ps->p++;
}

static int tj_hex4(tj_parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *ps->p++;
        v = v * 16 + (uint32_t)(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99);
        if (v > 0xFFFF) return -1;
    }
    *out = v;
    return 0;
}

static int tj_string(tj_parser *ps, char **out, size_t *out_len) {
    if (ps->p >= ps->end || *ps->p != '"') return -1;
    ps->p++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    while (ps->p < ps->end && *ps->p != '"') {
        if (len + 8 > cap) s = realloc(s, cap *= 2);
        char c = *ps->p++;
        if (c != '\\') { s[len++] = c; continue; }
        if (ps->p >= ps->end) break;
        c = *ps->p++;
        uint32_t cp;
        switch (c) {
        case 'n': s[len++] = '\n'; break;
        case 't': s[len++] = '\t'; break;
        case 'r': s[len++] = '\r'; break;
        case 'b': s[len++] = '\b'; break;
        case 'f': s[len++] = '\f'; break;
        case 'u':
            if (tj_hex4(ps, &cp)) goto bad;
            if (cp >= 0xD800 && cp < 0xDC00) {
                uint32_t lo;
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') goto bad;
                ps->p += 2;
                if (tj_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF) goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            len += utf8_encode(cp, (uint8_t *)s + len);
            break;
        default: s[len++] = c; break;
        }
    }
    if (ps->p >= ps->end) goto bad;
    ps->p++;
    s[len] = 0;
    *out = s;
    *out_len = len;
    return 0;
bad:
    free(s);
    return -1;
}

static int tj_parse_value(tj_parser *ps, tj_value *v) {
    memset(v, 0, sizeof *v);
    tj_ws(ps);
    if (ps->p >= ps->end || ++ps->depth > 64) return -1;
    int rc = 0;
    char c = *ps->p;
    if (c == '"') {
        v->type = 's';
        rc = tj_string(ps, &v->str, &v->len);
    } else if (c == '[' || c == '{') {
        v->type = c == '[' ? 'a' : 'o';
        ps->p++;
        size_t cap = 0;
        tj_ws(ps);
        if (ps->p < ps->end && *ps->p == (c == '[' ? ']' : '}')) ps->p++;
        else
            for (;;) {
                if (v->n == cap) {
                    cap = cap ? cap * 2 : 8;
                    v->items = realloc(v->items, cap * sizeof *v->items);
                    if (c == '{') v->keys = realloc(v->keys, cap * sizeof *v->keys);
                }
                if (c == '{') {
                    size_t kl;
                    tj_ws(ps);
                    if (tj_string(ps, &v->keys[v->n], &kl)) { rc = -1; break; }
                    tj_ws(ps);
                    if (ps->p >= ps->end || *ps->p++ != ':') { free(v->keys[v->n]); rc = -1; break; }
                }
                if (tj_parse_value(ps, &v->items[v->n])) { tj_free(&v->items[v->n]); if (c == '{') free(v->keys[v->n]); rc = -1; break; }
                v->n++;
                tj_ws(ps);
                if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
                if (ps->p < ps->end && *ps->p == (c == '[' ? ']' : '}')) { ps->p++; break; }
                rc = -1;
                break;
            }
    } else if (c == 't' || c == 'f' || c == 'n') {
        v->type = c == 'n' ? 'z' : 'b';
        v->num = c == 't';
        size_t k = c == 'f' ? 5 : 4;
        if ((size_t)(ps->end - ps->p) < k) return -1;
        ps->p += k;
    } else {
        v->type = 'n';
        char *endp;
        v->num = strtod(ps->p, &endp);
        if (endp == ps->p) rc = -1;
        ps->p = endp;
    }
    ps->depth--;
    return rc;
}

static int tj_load(const char *path, tj_value *v) {
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", path);
        memset(v, 0, sizeof *v);
        return -1;
    }
    tj_parser ps = {text, text + len, 0};
    int rc = tj_parse_value(&ps, v);
    free(text);
    if (rc) {
        fprintf(stderr, "cannot parse %s\n", path);
        tj_free(v);
        memset(v, 0, sizeof *v);
    }
    return rc;
}

static const tj_value *tj_get(const tj_value *o, const char *key) {
    if (!o || o->type != 'o') return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

/* ---- helpers ---- */

static bool ids_equal(const int_vec *got, const tj_value *want) {
    if (!want || want->type != 'a' || got->len != want->n) return false;
    for (size_t i = 0; i < want->n; i++)
        if (got->data[i] != (int32_t)want->items[i].num) return false;
    return true;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Encodes text; returns the status. */
static abc_status encode(const char *text, size_t len, int_vec *ids, abc_error *err) {
    ids->len = 0;
    return tokenizer_encode(g_tok, text, len, ids, err);
}

/* The concatenated bytes of ids. */
static char *detokenize(const int_vec *ids, size_t *len) {
    size_t total = 0, n;
    for (size_t i = 0; i < ids->len; i++)
        if (tokenizer_token_bytes(g_tok, ids->data[i], &n)) total += n;
    char *out = malloc(total + 1), *p = out;
    for (size_t i = 0; i < ids->len; i++) {
        const char *b = tokenizer_token_bytes(g_tok, ids->data[i], &n);
        if (b) {
            memcpy(p, b, n);
            p += n;
        }
    }
    *len = total;
    return out;
}

/* ---- fixture ids ---- */

static void test_fixture_cases(void) {
    tj_value cases;
    CHECK(tj_load(FIXTURE_DIR "/tokenizer_cases.json", &cases) == 0 && cases.type == 'a' && cases.n >= 20, "fixture cases");
    int_vec ids = {0};
    abc_error err;
    for (size_t i = 0; i < cases.n; i++) {
        const tj_value *text = tj_get(&cases.items[i], "text"), *want = tj_get(&cases.items[i], "ids");
        CHECK(text && want, "case %zu malformed", i);
        if (!text || !want) continue;
        CHECK(encode(text->str, text->len, &ids, &err) == ABC_OK, "%s", err.message);
        bool ok = ids_equal(&ids, want);
        CHECK(ok, "case %zu \"%.60s\"", i, text->str);
        if (!ok) print_ids("got", ids.data, ids.len);
    }
    int_vec_free(&ids);
    tj_free(&cases);
}

/* Every manifest prompt, with <|image_pad|> expanded to one token per merged patch, gives the
 * case's input_ids.npy. */
static void test_manifest_prompts(void) {
    tj_value manifest;
    CHECK(tj_load(FIXTURE_DIR "/manifest.json", &manifest) == 0, "manifest");
    const tj_value *cases = tj_get(&manifest, "cases");
    CHECK(cases && cases->type == 'a' && cases->n >= 8, "manifest cases");
    int_vec ids = {0}, expanded = {0};
    abc_error err;
    const char *pad = "<|image_pad|>";
    int32_t pad_id = -1;
    CHECK(encode(pad, strlen(pad), &ids, &err) == ABC_OK && ids.len == 1, "image_pad is one token");
    pad_id = ids.data[0];
    for (size_t i = 0; cases && i < cases->n; i++) {
        const tj_value *c = &cases->items[i];
        const tj_value *prompt = tj_get(c, "prompt"), *grid = tj_get(c, "grid_thw"), *dir = tj_get(c, "dir");
        const tj_value *name = tj_get(c, "name");
        CHECK(prompt && dir && name, "case %zu malformed", i);
        if (!prompt || !dir || !name) continue;
        CHECK(encode(prompt->str, prompt->len, &ids, &err) == ABC_OK, "%s", err.message);
        size_t n_image = 0;
        if (grid && grid->type == 'a' && grid->n == 3)
            n_image = (size_t)(grid->items[0].num * grid->items[1].num * grid->items[2].num) / 4;
        expanded.len = 0;
        size_t n_pads = 0;
        for (size_t k = 0; k < ids.len; k++) {
            if (ids.data[k] == pad_id) {
                n_pads++;
                for (size_t r = 0; r < n_image; r++) int_vec_push(&expanded, pad_id);
            } else {
                int_vec_push(&expanded, ids.data[k]);
            }
        }
        CHECK(n_pads == (n_image ? 1u : 0u), "%s: %zu image pads", name->str, n_pads);
        char path[512];
        snprintf(path, sizeof path, FIXTURE_DIR "/%s/input_ids.npy", dir->str);
        test_npy ref;
        CHECK(test_npy_read(path, &ref) == 0 && ref.dtype == 'i' && ref.ndim == 1, "%s", path);
        bool same = ref.data && ref.count == expanded.len && !memcmp(ref.data, expanded.data, ref.count * 4);
        CHECK(same, "%s: %zu ids, reference %zu", name->str, expanded.len, ref.count);
        test_npy_free(&ref);
    }
    int_vec_free(&ids);
    int_vec_free(&expanded);
    tj_free(&manifest);
}

/* ~5000 strings with ids from an independent implementation (transformers.js); also the round trip:
 * the tokens' bytes are the text (after NFC). */
static void test_corpus(void) {
    tj_value corpus;
    CHECK(tj_load("tests/fixtures/tokenizer/corpus.json", &corpus) == 0 && corpus.type == 'a' && corpus.n > 4000, "corpus");
    int_vec ids = {0};
    abc_error err;
    size_t failures = 0, roundtrip_failures = 0, tokens = 0;
    encode_scratch s = {0};
    for (size_t i = 0; i < corpus.n; i++) {
        const tj_value *text = tj_get(&corpus.items[i], "text"), *want = tj_get(&corpus.items[i], "ids");
        if (!text || !want) { failures++; continue; }
        if (encode(text->str, text->len, &ids, &err) != ABC_OK || !ids_equal(&ids, want)) {
            if (failures++ < 10) {
                fprintf(stderr, "  corpus %zu: \"%.80s\"\n", i, text->str);
                print_ids("got ", ids.data, ids.len);
                int32_t w[40];
                for (size_t k = 0; k < want->n && k < 40; k++) w[k] = (int32_t)want->items[k].num;
                print_ids("want", w, want->n);
            }
        }
        tokens += ids.len;
        size_t len, nfc_len = text->len;
        char *back = detokenize(&ids, &len);
        const char *nfc = text->str;
        if (!nfc_quick_check((const uint8_t *)text->str, text->len)) {
            nfc_normalize(&s, (const uint8_t *)text->str, text->len, &nfc_len);
            nfc = (const char *)s.nfc;
        }
        if (len != nfc_len || memcmp(back, nfc, len)) roundtrip_failures++;
        free(back);
    }
    CHECK(failures == 0, "%zu of %zu corpus strings differ", failures, corpus.n);
    CHECK(roundtrip_failures == 0, "%zu strings do not round-trip", roundtrip_failures);
    CHECK(tokens > 100000, "only %zu tokens", tokens);
    encode_scratch_free(&s);
    int_vec_free(&ids);
    tj_free(&corpus);
}

/* ---- NFC against Unicode's NormalizationTest.txt (columns c1 → c2; c3 → c2) ---- */

static size_t parse_cps(const char *p, uint8_t *out) {
    size_t len = 0;
    while (*p) {
        char *end;
        unsigned long cp = strtoul(p, &end, 16);
        if (end == p) break;
        len += utf8_encode((uint32_t)cp, out + len);
        p = end;
    }
    return len;
}

static void test_nfc_normalization_test(void) {
    FILE *f = fopen("tests/fixtures/tokenizer/nfc_cases.txt", "r");
    CHECK(f != NULL, "tests/fixtures/tokenizer/nfc_cases.txt");
    if (!f) return;
    char line[1024];
    uint8_t in[512], want[512];
    encode_scratch s = {0};
    size_t n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *semi = strchr(line, ';');
        if (!semi) continue;
        *semi = 0;
        char *semi2 = strchr(semi + 1, ';');
        size_t in_len = parse_cps(line, in), want_len;
        if (semi2) *semi2 = 0;
        want_len = parse_cps(semi + 1, want);
        size_t got_len = 0;
        const uint8_t *got = in;
        got_len = in_len;
        if (!nfc_quick_check(in, in_len)) {
            nfc_normalize(&s, in, in_len, &got_len);
            got = s.nfc;
        }
        if (got_len != want_len || memcmp(got, want, got_len)) {
            if (bad++ < 5) fprintf(stderr, "  NFC mismatch: %s\n", line);
        }
        if (semi2) { /* the NFD column normalizes to the same */
            size_t nfd_len = parse_cps(semi2 + 1, in);
            nfc_normalize(&s, in, nfd_len, &got_len);
            if (got_len != want_len || memcmp(s.nfc, want, got_len)) {
                if (bad++ < 5) fprintf(stderr, "  NFC(NFD) mismatch: %s\n", line);
            }
        }
        n++;
    }
    fclose(f);
    encode_scratch_free(&s);
    CHECK(n > 15000, "only %zu cases", n);
    CHECK(bad == 0, "%zu NFC mismatches", bad);
}

/* ---- the pre-tokenizer, by hand ---- */

/* Splits text into pre-tokens joined with '|'. */
static void pretokens(const char *text, char *out, size_t cap) {
    size_t n = strlen(text), o = 0;
    for (size_t pos = 0; pos < n;) {
        size_t end = pretoken_end((const uint8_t *)text, pos, n);
        if (pos && o + 1 < cap) out[o++] = '|';
        for (size_t k = pos; k < end && o + 1 < cap; k++) out[o++] = text[k];
        pos = end;
    }
    out[o] = 0;
}

static void test_pretokenizer_regex(void) {
    static const char *cases[][2] = {
        {"Hello world", "Hello| world"},
        {"I'm sure you'll see it; DON'T they've?", "I|'m| sure| you|'ll| see| it|;| DON|'T| they|'ve|?"},
        {"'Re'rE'vE'LL'lL'D'x", "'Re|'rE|'vE|'LL|'lL|'D|'x"},
        /* upper- and mixed-case contractions followed by letters (issue #26, T2): (?i) makes 'S a
         * contraction of its own; case-sensitive matching would give SHE|'SGONE */
        {"SHE'SGONE", "SHE|'S|GONE"},
        {"WE'REHERE THEY'LLGO I'MOK YOU'VEBEEN HE'DGO CAN'TSTOP", "WE|'RE|HERE| THEY|'LL|GO| I|'M|OK| YOU|'VE|BEEN| HE|'D|GO| CAN|'T|STOP"},
        {"x'Rex'rEx'Llx'lLx'Vex'vE", "x|'Re|x|'rE|x|'Ll|x|'lL|x|'Ve|x|'vE"},
        {"it's'", "it|'s|'"},
        {"'", "'"},
        {"a'", "a|'"},
        {"123 4", "1|2|3| |4"},
        {"  leading", " | leading"},
        {"a  b", "a| | b"},
        {"a   \n  b", "a|   \n| | b"},
        {"x\n\n\ny", "x|\n\n\n|y"},
        {"x \t \r\n \t y", "x| \t \r\n| \t| y"},
        {"end   ", "end|   "},
        {"\t\tword", "\t|\tword"},
        {"x ??? y", "x| ???| y"},
        {"x ???\n\ny", "x| ???\n\n|y"},
        {"x\t???", "x|\t|???"},
        {"(a)", "(a|)"},
        {"..a", "..|a"},
        {" 1", " |1"},
        {"a\xc2\xa0" "b", "a|\xc2\xa0" "b"},                 /* NBSP is \s and joins a word */
        {"a\xe3\x80\x80\xe3\x80\x80" "b", "a|\xe3\x80\x80|\xe3\x80\x80" "b"}, /* U+3000 ideographic space */
        {"a\xc2\x85" "b", "a|\xc2\x85" "b"},                 /* U+0085 is \s in Oniguruma (HF) */
        {"a \xc2\x85\n" "b", "a| \xc2\x85\n|b"},
        {"a\xef\xbb\xbf" "b", "a|\xef\xbb\xbf" "b"},         /* U+FEFF is not \s: an "other" joined to b */
        {"a \xef\xbb\xbf", "a| \xef\xbb\xbf"},
        {"it'\xc5\xbft", "it|'\xc5\xbf|t"},                /* (?i)'s matches U+017F LONG S */
        {"it'\xc5\xbf", "it|'\xc5\xbf"},
        {"don\xe2\x80\x99t", "don|\xe2\x80\x99t"},          /* only the ASCII apostrophe */
        {"caf\xc3\xa9s", "caf\xc3\xa9s"},
        {"\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8", "\xe0\xa4\xb9|\xe0\xa4\xbf\xe0\xa4\xa8"}, /* Devanagari: marks are not \p{L} */
        {"x\xc2\xb2" "3", "x|\xc2\xb2|3"},                   /* superscript two is \p{N} */
        {"\xe2\x85\xab" "a", "\xe2\x85\xab|a"},              /* Roman numeral twelve is \p{N} (Nl) */
        {"a\xe2\x80\xa8" "b", "a|\xe2\x80\xa8" "b"},         /* U+2028 is \s, not [\r\n] */
        {"\r\n\r\nA", "\r\n\r\n|A"},
        {"\n a", "\n| a"},
        {" \n", " \n"},
        {"a\xf0\x9f\x99\x82 b", "a|\xf0\x9f\x99\x82| b"},
        {"\xf0\x9f\x99\x82\n\nz", "\xf0\x9f\x99\x82\n\n|z"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pretokens(cases[i][0], got, sizeof got);
        CHECK(!strcmp(got, cases[i][1]), "case %zu: got [%s] want [%s]", i, got, cases[i][1]);
    }
    /* A NUL byte is an ordinary "other" character (the length is explicit). */
    const char nul[] = "a\0\0b c";
    size_t end = pretoken_end((const uint8_t *)nul, 1, sizeof nul - 1);
    CHECK(end == 3, "NUL run ends at %zu", end);
}

/* The characters the pre-tokenizer classifies differently from ASCII-only code come from the tables. */
static void test_unicode_classes(void) {
    CHECK(uc_flags('a') & UC_LETTER, "a");
    CHECK(uc_flags(0x4E2D) & UC_LETTER, "CJK");
    CHECK(uc_flags(0x20000) & UC_LETTER, "CJK ext B");
    CHECK(uc_flags(0xAC00) & UC_LETTER, "Hangul");
    CHECK(!(uc_flags(0x0301) & (UC_LETTER | UC_NUMBER | UC_SPACE)), "combining acute");
    CHECK(uc_flags(0x0663) & UC_NUMBER, "Arabic-Indic three");
    CHECK(uc_flags(0x00BD) & UC_NUMBER, "one half");
    CHECK(uc_flags(0x2028) & UC_SPACE, "line separator");
    CHECK(uc_flags(0x0085) & UC_SPACE, "NEL");
    CHECK(!(uc_flags(0xFEFF) & UC_SPACE), "BOM");
    CHECK(!(uc_flags(0x200B) & UC_SPACE), "zero width space");
    CHECK(uc_flags(0x00E9) == UC_LETTER && (uc_flags(0x0300) & UC_NFC_CHECK), "NFC quick check");
    CHECK(uc_ccc(0x0301) == 230 && uc_ccc(0x0323) == 220 && uc_ccc('a') == 0, "ccc");
    CHECK(uc_flags(0x110000) == 0 && uc_ccc(0xFFFFFFFF) == 0, "out of range");
    CHECK(compose_pair('e', 0x301) == 0xE9 && compose_pair(0x1100, 0x1161) == 0xAC00 &&
              compose_pair(0xAC00, 0x11A8) == 0xAC01 && compose_pair(0xAC01, 0x11A8) == 0,
          "composition");
}

static void test_nfc_in_encode(void) {
    int_vec a = {0}, b = {0};
    abc_error err;
    CHECK(encode("caf\xc3\xa9", 5, &a, &err) == ABC_OK, "composed");
    CHECK(encode("cafe\xcc\x81", 6, &b, &err) == ABC_OK, "decomposed");
    CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len * 4), "NFC makes both the same");
    /* Canonical reordering: dot below (220) before acute (230) whatever the input order. */
    CHECK(encode("a\xcc\x81\xcc\xa3", 5, &a, &err) == ABC_OK, "marks 1");
    CHECK(encode("a\xcc\xa3\xcc\x81", 5, &b, &err) == ABC_OK, "marks 2");
    CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len * 4), "reordered");
    /* A long run of marks in alternating classes (the counting-sort path) stays correct and fast. */
    size_t n = 200000;
    char *zalgo = malloc(1 + 4 * n);
    zalgo[0] = 'a';
    for (size_t i = 0; i < n; i++) memcpy(zalgo + 1 + 2 * i, i % 2 ? "\xcc\x81" : "\xcc\xa3", 2);
    double t = now_seconds();
    CHECK(encode(zalgo, 1 + 2 * n, &a, &err) == ABC_OK, "%s", err.message);
    t = now_seconds() - t;
    CHECK(t < 5, "200000 stacked marks took %.2f s", t);
    size_t len;
    char *back = detokenize(&a, &len);
    /* 'a' + dot below composes to U+1EA1 (ạ) then acute cannot compose (U+1EA1+acute has no
     * composite), so: ạ, 99999 more dots below, 100000 acutes. */
    CHECK(len == 3 + 2 * (n - 1) && !memcmp(back, "\xe1\xba\xa1", 3) && !memcmp(back + 3, "\xcc\xa3", 2) &&
              !memcmp(back + len - 2, "\xcc\x81", 2) && !memcmp(back + 3 + 2 * (n / 2 - 1), "\xcc\x81", 2),
          "sorted marks");
    free(back);
    free(zalgo);
    int_vec_free(&a);
    int_vec_free(&b);
}

/* ---- errors and robustness ---- */

static void test_invalid_utf8(void) {
    static const struct { const char *s; size_t len, offset; } cases[] = {
        {"abc\x80", 4, 3},               /* stray continuation */
        {"\xc0\xaf", 2, 0},              /* overlong '/' */
        {"ok \xc1\xbf", 5, 3},           /* overlong */
        {"\xe0\x80\xaf", 3, 0},          /* overlong 3-byte */
        {"\xf0\x80\x80\xaf", 4, 0},      /* overlong 4-byte */
        {"x\xed\xa0\x80", 4, 1},         /* surrogate U+D800 */
        {"x\xed\xbf\xbf", 4, 1},         /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 4, 0},      /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},      /* lead byte F5 */
        {"\xff", 1, 0},
        {"ab\xe4\xbd", 4, 2},            /* truncated at the end */
        {"\xe4\xbd" "a", 3, 0},          /* truncated before ASCII */
        {"\xf0\x9f\x99", 3, 0},          /* truncated 4-byte */
        {"<|im_start|>\xc3", 13, 12},    /* after an added token */
        {"\xc3(", 2, 0},
    };
    int_vec ids = {0};
    abc_error err;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int_vec_push(&ids, 7);
        abc_status st = tokenizer_encode(g_tok, cases[i].s, cases[i].len, &ids, &err);
        CHECK(st == ABC_ERR_UTF8, "case %zu: status %d", i, st);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", cases[i].offset);
        CHECK(strstr(err.message, want) != NULL, "case %zu: message '%s' lacks '%s'", i, err.message, want);
        CHECK(ids.len == 1 && ids.data[0] == 7, "case %zu: ids untouched", i);
        ids.len = 0;
    }
    /* Valid edge code points. */
    const char ok[] = "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    CHECK(encode(ok, sizeof ok - 1, &ids, &err) == ABC_OK, "%s", err.message);
    size_t len;
    char *back = detokenize(&ids, &len);
    CHECK(len == sizeof ok - 1 && !memcmp(back, ok, len), "edge code points round-trip");
    free(back);
    CHECK(tokenizer_encode(g_tok, NULL, 0, &ids, &err) == ABC_OK, "NULL empty text");
    CHECK(tokenizer_encode(g_tok, NULL, 3, &ids, &err) == ABC_ERR_INVALID_ARG, "NULL text");
    int_vec_free(&ids);
}

static void test_embedded_nul(void) {
    int_vec ids = {0};
    abc_error err;
    const char text[] = "a\0b<|im_end|>\0";
    CHECK(encode(text, sizeof text - 1, &ids, &err) == ABC_OK, "%s", err.message);
    size_t len;
    char *back = detokenize(&ids, &len);
    CHECK(len == sizeof text - 1 && !memcmp(back, text, len), "NUL bytes round-trip");
    free(back);
    int32_t im_end = -1;
    for (size_t i = 0; i < ids.len; i++) {
        const char *b = tokenizer_token_bytes(g_tok, ids.data[i], &len);
        if (b && len == 10 && !memcmp(b, "<|im_end|>", 10)) im_end = ids.data[i];
    }
    CHECK(im_end == 151645, "special token after NUL: %d", im_end);
    int_vec_free(&ids);
}

static void test_added_tokens(void) {
    int_vec ids = {0};
    abc_error err;
    CHECK(encode("<|im_start|><|im_end|>", 22, &ids, &err) == ABC_OK && ids.len == 2 && ids.data[0] == 151644 &&
              ids.data[1] == 151645,
          "two specials");
    CHECK(encode("<|im_start", 10, &ids, &err) == ABC_OK && ids.len > 1, "partial special is text");
    CHECK(encode("<<|endoftext|>>", 15, &ids, &err) == ABC_OK && ids.len == 3 && ids.data[1] == 151643, "embedded");
    size_t len;
    const char *b = tokenizer_token_bytes(g_tok, 151655, &len);
    CHECK(b && len == 13 && !memcmp(b, "<|image_pad|>", 13), "token bytes of image_pad");
    b = tokenizer_token_bytes(g_tok, 220, &len);
    CHECK(b && len == 1 && b[0] == ' ', "token 220 is a space");
    CHECK(tokenizer_token_bytes(g_tok, -1, &len) == NULL && tokenizer_token_bytes(g_tok, 151657, &len) == NULL &&
              tokenizer_token_bytes(g_tok, 1 << 30, &len) == NULL,
          "invalid ids");
    int_vec_free(&ids);
}

/* 10 MB: a repeated line tokenizes to the line's ids repeated (the line ends in \n and starts with
 * a letter, so pre-tokens never straddle two copies). */
static void test_large_input(void) {
    const char *line = "The quick brown fox jumps over the lazy dog; \xe4\xbd\xa0\xe5\xa5\xbd 123 caf\xc3\xa9!\n";
    size_t line_len = strlen(line), copies = 10 * 1000 * 1000 / line_len;
    char *text = malloc(copies * line_len);
    for (size_t i = 0; i < copies; i++) memcpy(text + i * line_len, line, line_len);
    int_vec one = {0}, all = {0};
    abc_error err;
    CHECK(encode(line, line_len, &one, &err) == ABC_OK, "one line");
    double t = now_seconds();
    CHECK(encode(text, copies * line_len, &all, &err) == ABC_OK, "%s", err.message);
    t = now_seconds() - t;
    bool same = all.len == copies * one.len;
    for (size_t i = 0; same && i < all.len; i++) same = all.data[i] == one.data[i % one.len];
    CHECK(same, "10 MB: %zu ids, want %zu", all.len, copies * one.len);
    printf("     10 MB tokenized in %.2f s (sanitized build)\n", t);
    free(text);
    int_vec_free(&one);
    int_vec_free(&all);
}

/* A 100 kB single word must not be quadratic. */
static void test_long_word(void) {
    size_t n = 100 * 1000;
    char *word = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        word[i] = (char)('a' + (x >> 16) % 26);
    }
    int_vec ids = {0};
    abc_error err;
    double t = now_seconds();
    CHECK(encode(word, n, &ids, &err) == ABC_OK, "%s", err.message);
    t = now_seconds() - t;
    size_t len;
    char *back = detokenize(&ids, &len);
    CHECK(len == n && !memcmp(back, word, n), "round trip");
    CHECK(t < 2.0, "100 kB word took %.3f s", t);
    printf("     100 kB random word: %zu tokens in %.3f s (sanitized build)\n", ids.len, t);
    free(back);
    memset(word, 'a', n);
    t = now_seconds();
    CHECK(encode(word, n, &ids, &err) == ABC_OK, "%s", err.message);
    t = now_seconds() - t;
    CHECK(t < 2.0, "100 kB of 'a' took %.3f s", t);
    back = detokenize(&ids, &len);
    CHECK(len == n && !memcmp(back, word, n), "round trip of a's");
    free(back);
    free(word);
    int_vec_free(&ids);
}

/* ---- synthetic tokenizers: BPE rules and load validation ---- */

typedef struct {
    uint8_t bytes[4096];
    int32_t offsets[600];
    int32_t merges[64][3];
    int32_t added_ids[4], added_special[4];
    int n_vocab, n_merges, n_added;
    tensor tensors[5];
    meta_entry meta[3];
    weight_file wf;
} fake_file;

/* Vocabulary: the 256 bytes (id = byte), then `extra` tokens; merges by rank. */
static void fake_init(fake_file *f, const char *const *extra, int n_extra) {
    memset(f, 0, sizeof *f);
    int pos = 0;
    for (int i = 0; i < 256; i++) {
        f->offsets[i] = pos;
        f->bytes[pos++] = (uint8_t)i;
    }
    for (int i = 0; i < n_extra; i++) {
        f->offsets[256 + i] = pos;
        memcpy(f->bytes + pos, extra[i], strlen(extra[i]));
        pos += (int)strlen(extra[i]);
    }
    f->n_vocab = 256 + n_extra;
    f->offsets[f->n_vocab] = pos;
}

static int32_t fake_id(const fake_file *f, const char *s) {
    for (int i = 0; i < f->n_vocab; i++)
        if (f->offsets[i + 1] - f->offsets[i] == (int)strlen(s) && !memcmp(f->bytes + f->offsets[i], s, strlen(s))) return i;
    return -1;
}

static void fake_merge(fake_file *f, const char *a, const char *b) {
    char ab[64];
    snprintf(ab, sizeof ab, "%s%s", a, b);
    f->merges[f->n_merges][0] = fake_id(f, a);
    f->merges[f->n_merges][1] = fake_id(f, b);
    f->merges[f->n_merges][2] = fake_id(f, ab);
    f->n_merges++;
}

static void fake_finish(fake_file *f, const char *normalizer) {
    static const char *names[] = {"tokenizer.vocab.bytes", "tokenizer.vocab.offsets", "tokenizer.merges",
                                  "tokenizer.added.ids", "tokenizer.added.special"};
    int n_tensors = f->n_added ? 5 : 3;
    for (int i = 0; i < n_tensors; i++) {
        tensor *t = &f->tensors[i];
        t->name = names[i];
        t->name_len = (uint32_t)strlen(names[i]);
        t->ndim = i == 2 ? 2 : 1;
        t->dtype = i == 0 ? DT_U8 : DT_I32;
        for (int d = 0; d < 4; d++) t->shape[d] = 1;
    }
    f->tensors[0].shape[0] = f->offsets[f->n_vocab];
    f->tensors[0].data = f->bytes;
    f->tensors[1].shape[0] = f->n_vocab + 1;
    f->tensors[1].data = f->offsets;
    f->tensors[2].shape[0] = f->n_merges;
    f->tensors[2].shape[1] = 3;
    f->tensors[2].data = f->merges;
    f->tensors[3].shape[0] = f->tensors[4].shape[0] = f->n_added;
    f->tensors[3].data = f->added_ids;
    f->tensors[4].data = f->added_special;
    static const char *keys[] = {"tokenizer.model", "tokenizer.pretokenizer", "tokenizer.normalizer"};
    const char *values[] = {"bpe_byte_level", "qwen2", normalizer};
    for (int i = 0; i < 3; i++) {
        f->meta[i] = (meta_entry){keys[i], (uint32_t)strlen(keys[i]), 3, strlen(values[i]), values[i]};
    }
    f->wf.meta = f->meta;
    f->wf.n_meta = 3;
    f->wf.tensors = f->tensors;
    f->wf.n_tensors = (uint32_t)n_tensors;
}

static void fake_encode(const fake_file *f, const char *text, char *out, size_t cap) {
    tokenizer *tok;
    abc_error err;
    out[0] = 0;
    if (tokenizer_load(&f->wf, &tok, &err) != ABC_OK) {
        snprintf(out, cap, "load error: %.240s", err.message);
        return;
    }
    int_vec ids = {0};
    if (tokenizer_encode(tok, text, strlen(text), &ids, &err) == ABC_OK) {
        size_t o = 0;
        for (size_t i = 0; i < ids.len; i++) {
            size_t len;
            const char *b = tokenizer_token_bytes(tok, ids.data[i], &len);
            o += (size_t)snprintf(out + o, cap - o, "%s%.*s", i ? "|" : "", (int)len, b);
        }
    }
    int_vec_free(&ids);
    tokenizer_free(tok);
}

static void test_bpe_rules(void) {
    static fake_file f;
    const char *extra[] = {"ab", "bc", "abc", "aa", "aaa", "aaaa", "cd", "bcd", "abcd", "<s>", "<s>x", "xy"};
    fake_init(&f, extra, 12);
    fake_merge(&f, "b", "c");    /* rank 0 */
    fake_merge(&f, "a", "b");    /* rank 1 */
    fake_merge(&f, "a", "bc");   /* rank 2 */
    fake_merge(&f, "a", "a");    /* rank 3 */
    fake_merge(&f, "aa", "a");   /* rank 4 */
    fake_merge(&f, "aa", "aa");  /* rank 5 */
    fake_merge(&f, "c", "d");    /* rank 6 */
    fake_merge(&f, "bc", "d");   /* rank 7 */
    fake_merge(&f, "a", "bcd");  /* rank 8 */
    f.added_ids[0] = fake_id(&f, "<s>");
    f.added_ids[1] = fake_id(&f, "<s>x");
    f.added_special[0] = 1;
    f.n_added = 2;
    fake_finish(&f, "nfc");
    char out[256];
    fake_encode(&f, "abc", out, sizeof out);
    CHECK(!strcmp(out, "abc"), "lowest rank first (b c), then a+bc: %s", out);
    fake_encode(&f, "aaa", out, sizeof out);
    CHECK(!strcmp(out, "aaa"), "aa + a merges (rank 4): %s", out);
    fake_encode(&f, "aaaaa", out, sizeof out);
    /* a a a a a → (rank 3, leftmost) aa a a a → aa aa a → (rank 4 at pos 2: aa+a) → aa aaa? no:
     * after the first merge the candidates are aa+a (rank 4) at 0 and a+a (rank 3) at 2: a+a wins,
     * giving aa aa a; then aa+aa (5) and aa+a (4): aa+a at 2 wins → aa aaa. */
    CHECK(!strcmp(out, "aa|aaa"), "aaaaa: %s", out);
    fake_encode(&f, "abcd", out, sizeof out);
    CHECK(!strcmp(out, "abc|d"), "abcd: %s", out);
    fake_encode(&f, "<s>xy <s>", out, sizeof out);
    CHECK(!strcmp(out, "<s>x|y| |<s>"), "longest added token first: %s", out);
    fake_encode(&f, "xx<s", out, sizeof out);
    CHECK(!strcmp(out, "x|x|<|s"), "partial added token: %s", out);

    /* Without NFC the decomposed form stays. */
    fake_finish(&f, "none");
    fake_encode(&f, "e\xcc\x81", out, sizeof out);
    CHECK(!strcmp(out, "e|\xcc\x81") || !strcmp(out, "e|\xcc|\x81"), "no NFC: %s", out);
    CHECK(strlen(out) == 5, "no NFC keeps 3 bytes: %s", out);
    fake_finish(&f, "nfc");
    fake_encode(&f, "e\xcc\x81", out, sizeof out);
    CHECK(!strcmp(out, "\xc3|\xa9"), "NFC: %s", out);
}

static void expect_load_error(fake_file *f, abc_status want, const char *fragment) {
    tokenizer *tok = (tokenizer *)1;
    abc_error err = {0};
    abc_status st = tokenizer_load(&f->wf, &tok, &err);
    CHECK(st == want && tok == NULL, "status %d (want %d) for '%s'", st, want, fragment);
    CHECK(strstr(err.message, fragment) != NULL, "message '%s' lacks '%s'", err.message, fragment);
    if (st == ABC_OK) tokenizer_free(tok);
}

static void test_load_validation(void) {
    static fake_file f;
    const char *extra[] = {"ab", "<x>"};
    fake_init(&f, extra, 2);
    fake_merge(&f, "a", "b");
    f.added_ids[0] = 257;
    f.added_special[0] = 1;
    f.n_added = 1;
    fake_finish(&f, "nfc");
    tokenizer *tok;
    abc_error err;
    CHECK(tokenizer_load(&f.wf, &tok, &err) == ABC_OK, "valid fake: %s", err.message);
    if (tok) tokenizer_free(tok);

    f.merges[0][2] = 257; /* "<x>" is not "a" + "b" */
    expect_load_error(&f, ABC_ERR_FORMAT, "is not token");
    f.merges[0][2] = 5000;
    expect_load_error(&f, ABC_ERR_FORMAT, "out of range");
    f.merges[0][2] = 256;
    f.merges[0][0] = -1;
    expect_load_error(&f, ABC_ERR_FORMAT, "out of range");
    f.merges[0][0] = 'a';

    f.offsets[10] = 50; /* decreasing offsets */
    expect_load_error(&f, ABC_ERR_FORMAT, "decreases");
    f.offsets[10] = 10;
    f.offsets[0] = 1;
    expect_load_error(&f, ABC_ERR_FORMAT, "must run from 0");
    f.offsets[0] = 0;

    f.tensors[1].shape[0] = 1;
    expect_load_error(&f, ABC_ERR_FORMAT, "bad length");
    f.tensors[1].shape[0] = f.n_vocab; /* the last offset then is not the byte count */
    expect_load_error(&f, ABC_ERR_FORMAT, "must run from 0");
    f.tensors[1].shape[0] = f.n_vocab + 1;

    f.tensors[1].dtype = DT_F32;
    expect_load_error(&f, ABC_ERR_FORMAT, "tokenizer.vocab.offsets");
    f.tensors[1].dtype = DT_I32;
    f.tensors[2].shape[1] = 2;
    expect_load_error(&f, ABC_ERR_FORMAT, "[n, 3]");
    f.tensors[2].shape[1] = 3;

    f.added_ids[0] = 999;
    expect_load_error(&f, ABC_ERR_FORMAT, "bad id");
    f.added_ids[0] = 0x80; /* a lone continuation byte could match inside a character */
    expect_load_error(&f, ABC_ERR_FORMAT, "not valid UTF-8");
    f.added_ids[0] = 257;
    f.added_special[0] = 2;
    expect_load_error(&f, ABC_ERR_FORMAT, "flag");
    f.added_special[0] = 1;
    f.tensors[4].shape[0] = 2;
    expect_load_error(&f, ABC_ERR_FORMAT, "disagree");
    f.tensors[4].shape[0] = 1;

    /* A byte without a token: make byte 0x41's token two bytes long. */
    fake_file g;
    fake_init(&g, extra, 2);
    g.offsets[0x42] = 0x41 + 2; /* token 0x41 = "AB"... and 0x42 empty */
    fake_finish(&g, "nfc");
    expect_load_error(&g, ABC_ERR_FORMAT, "no token for byte");

    const char *model = f.meta[0].payload;
    f.meta[0].payload = "wordpiece";
    f.meta[0].count = 9;
    expect_load_error(&f, ABC_ERR_UNSUPPORTED, "tokenizer.model");
    f.meta[0].payload = model;
    f.meta[0].count = strlen(model);
    f.meta[2].payload = "nfkc";
    f.meta[2].count = 4;
    expect_load_error(&f, ABC_ERR_UNSUPPORTED, "tokenizer.normalizer");
    f.meta[2].payload = "nfc";
    f.meta[2].count = 3;
    f.wf.n_tensors = 2;
    expect_load_error(&f, ABC_ERR_FORMAT, "tokenizer.merges");
    f.wf.n_tensors = 4; /* ids without special */
    expect_load_error(&f, ABC_ERR_FORMAT, "tokenizer.added.special");
    f.wf.n_tensors = 3; /* no added tokens at all is fine */
    CHECK(tokenizer_load(&f.wf, &tok, &err) == ABC_OK, "no added tokens: %s", err.message);
    if (tok) tokenizer_free(tok);
}

/* Every allocation failure in loading the tokenizer of `wf` and encoding `text` is reported as
 * ABC_ERR_NOMEM, without leaks or partial ids. */
static void check_allocation_failures(const weight_file *wf, const char *text) {
    int failures = 0;
    for (long k = 0; k < 200; k++) {
        tokenizer *tok = NULL;
        abc_error err;
        int_vec ids = {0};
        atomic_store(&abc_test_fail_after, k);
        abc_status st = tokenizer_load(wf, &tok, &err);
        if (st == ABC_OK) st = tokenizer_encode(tok, text, strlen(text), &ids, &err);
        long left = atomic_load(&abc_test_fail_after);
        atomic_store(&abc_test_fail_after, -1);
        if (st != ABC_OK) {
            failures++;
            CHECK(st == ABC_ERR_NOMEM, "k=%ld: status %d (%s)", k, st, err.message);
            CHECK(ids.len == 0, "k=%ld: partial ids", k);
        }
        int_vec_free(&ids);
        tokenizer_free(tok);
        if (left >= 0) break; /* no injected failure happened: all allocations were covered */
    }
    CHECK(failures >= 3, "only %d allocation points", failures);
}

static void test_allocation_failures(void) {
    check_allocation_failures(&g_wf, "Hello <|im_start|> caf\xc3\xa9 cafe\xcc\x81 world 123   \n x");
}

typedef struct {
    const char *text;
    size_t len;
    int_vec ids;
    abc_status st;
} thread_job;

static void *encode_thread(void *arg) {
    thread_job *j = arg;
    abc_error err;
    for (int r = 0; r < 5 && j->st == ABC_OK; r++) {
        j->ids.len = 0;
        j->st = tokenizer_encode(g_tok, j->text, j->len, &j->ids, &err);
    }
    return NULL;
}

static void test_threads(void) {
    const char *text = "Multithreaded: \xe4\xbd\xa0\xe5\xa5\xbd, caf\xc3\xa9 and cafe\xcc\x81 <|im_end|> 12345 \xf0\x9f\x99\x82!";
    int_vec want = {0};
    abc_error err;
    CHECK(encode(text, strlen(text), &want, &err) == ABC_OK, "reference");
    thread_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){text, strlen(text), {0}, ABC_OK};
        pthread_create(&th[i], NULL, encode_thread, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == ABC_OK && jobs[i].ids.len == want.len && !memcmp(jobs[i].ids.data, want.data, want.len * 4),
              "thread %d", i);
        int_vec_free(&jobs[i].ids);
    }
    int_vec_free(&want);
}

/* abc_tokenize / abc_token_bytes through a loaded model (the model section's loader). */
static void test_public_api(void) {
    abc_model_params params;
    memset(&params, 0, sizeof params);
    abc_model *model = NULL;
    abc_error err;
    abc_status st = model_load(TINY_MODEL, NULL, 0, &params, &model, &err);
    CHECK(st == ABC_OK, "model_load: %s", err.message);
    if (st != ABC_OK) return;
    const char *text = "<|im_start|>user\nHello world<|im_end|>";
    int32_t ids[16];
    size_t n = 99;
    CHECK(abc_tokenize(model, text, strlen(text), ids, 16, &n, &err) == ABC_OK && n == 6, "n=%zu", n);
    static const int32_t want[6] = {151644, 872, 198, 9707, 1879, 151645};
    CHECK(n == 6 && !memcmp(ids, want, sizeof want), "ids");
    int32_t small[2] = {-5, -5};
    CHECK(abc_tokenize(model, text, strlen(text), small, 2, &n, &err) == ABC_ERR_INVALID_ARG && n == 6, "too small");
    CHECK(small[0] == 151644 && small[1] == 872, "the first ids are written");
    CHECK(abc_tokenize(model, text, strlen(text), NULL, 0, &n, &err) == ABC_ERR_INVALID_ARG && n == 6, "count only");
    CHECK(abc_tokenize(model, "\xff", 1, ids, 16, &n, &err) == ABC_ERR_UTF8 && n == 0, "invalid UTF-8");
    CHECK(abc_tokenize(NULL, text, 1, ids, 16, &n, &err) == ABC_ERR_INVALID_ARG, "NULL model");
    CHECK(abc_tokenize(model, text, 1, ids, 16, NULL, &err) == ABC_ERR_INVALID_ARG, "NULL count");
    size_t len;
    const char *b = abc_token_bytes(model, 9707, &len);
    CHECK(b && len == 5 && !memcmp(b, "Hello", 5), "token bytes");
    CHECK(abc_token_bytes(model, -3, &len) == NULL && abc_token_bytes(NULL, 1, &len) == NULL, "bad id / model");
    model_free(model);
}

/* ---- SentencePiece BPE: Phi-3.5-V's Llama-2 tokenizer ---- */

/* Written by tests/test_tokenizer_convert.c's converter check from tests/fixtures/phi35v-tiny/tokenizer.json. */
#define PHI_DIR "tests/fixtures/phi35v-tiny"
static weight_file g_phi_wf;
static tokenizer *g_phi;

static abc_status phi_encode(const char *text, size_t len, int_vec *ids, abc_error *err) {
    ids->len = 0;
    return tokenizer_encode(g_phi, text, len, ids, err);
}

static bool ids_are(const int_vec *got, const int32_t *want, size_t n) {
    return got->len == n && (n == 0 || !memcmp(got->data, want, n * sizeof *want));
}

/* The reference manifest's prompts by the contract's prompt rule: split on <|image_1|>, every chunk
 * is [<s>] + encode(chunk), image tokens in between (left out here, as in tokens_nonimage). */
static void test_sp_manifest_prompts(void) {
    static const struct { const char *prompt; int32_t ids[24]; size_t n; } cases[] = {
        {"<|image_1|> Represent the given image with the following question: What is in the image",
         {1, 1, 29871, 16314, 278, 2183, 1967, 411, 278, 1494, 1139, 29901, 1724, 338, 297, 278, 1967}, 17},
        {"<|image_1|> Represent the given image.", {1, 1, 29871, 16314, 278, 2183, 1967, 29889}, 8},
        {"A cat and a dog", {1, 319, 6635, 322, 263, 11203}, 6},
        {"Find me an everyday image that matches the given caption: A cat and a tiger.",
         {1, 10987, 592, 385, 1432, 3250, 1967, 393, 7087, 278, 2183, 5777, 683, 29901, 319, 6635, 322, 263, 260, 4087, 29889}, 21},
    };
    CHECK(tokenizer_bos_id(g_phi) == 1 && tokenizer_bos_id(g_tok) == -1 && tokenizer_bos_id(NULL) == -1, "bos ids");
    const char *image = "<|image_1|>";
    int_vec ids = {0}, all = {0};
    abc_error err;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        all.len = 0;
        const char *p = cases[c].prompt, *end = p + strlen(p);
        for (;;) {
            const char *at = strstr(p, image);
            const char *chunk_end = at ? at : end;
            CHECK(phi_encode(p, (size_t)(chunk_end - p), &ids, &err) == ABC_OK, "%s", err.message);
            int_vec_push(&all, tokenizer_bos_id(g_phi));
            for (size_t i = 0; i < ids.len; i++) int_vec_push(&all, ids.data[i]);
            if (!at) break;
            p = at + strlen(image);
        }
        bool ok = ids_are(&all, cases[c].ids, cases[c].n);
        CHECK(ok, "manifest prompt %zu", c);
        if (!ok) print_ids("got", all.data, all.len);
    }
    int_vec_free(&ids);
    int_vec_free(&all);
}

/* ~680 strings with ids from transformers.js (tests/gen_sp_tokenizer_cases.js). */
static void test_sp_cases(void) {
    tj_value root;
    CHECK(tj_load(PHI_DIR "/tokenizer_cases.json", &root) == 0, "tokenizer_cases.json");
    const tj_value *cases = tj_get(&root, "cases");
    CHECK(cases && cases->type == 'a' && cases->n >= 500, "cases");
    int_vec ids = {0};
    abc_error err;
    size_t bad = 0;
    for (size_t i = 0; cases && i < cases->n; i++) {
        const tj_value *text = tj_get(&cases->items[i], "text"), *want = tj_get(&cases->items[i], "ids");
        CHECK(text && want, "case %zu malformed", i);
        if (!text || !want) continue;
        CHECK(phi_encode(text->str, text->len, &ids, &err) == ABC_OK, "%s", err.message);
        if (!ids_equal(&ids, want) && bad++ < 10) {
            CHECK(false, "case %zu \"%.60s\"", i, text->str);
            print_ids("got", ids.data, ids.len);
        }
    }
    CHECK(bad == 0, "%zu cases differ", bad);
    int_vec_free(&ids);
    tj_free(&root);
}

/* Concatenated token bytes of ids under the Phi tokenizer. */
static size_t phi_detokenize(const int_vec *ids, char *out, size_t cap) {
    size_t o = 0, n;
    for (size_t i = 0; i < ids->len; i++) {
        const char *b = tokenizer_token_bytes(g_phi, ids->data[i], &n);
        if (b && o + n <= cap) memcpy(out + o, b, n);
        o += b ? n : 0;
    }
    return o;
}

static void test_sp_token_bytes(void) {
    static const struct { int32_t id; const char *bytes; size_t len; } want[] = {
        {29871, " ", 1}, {278, " the", 4}, {13, "\n", 1}, {3, "\0", 1}, {258, "\xff", 1}, {1, "<s>", 3},
        {0, "<unk>", 5}, {32010, "<|user|>", 8}, {32007, "<|end|>", 7}, {29889, ".", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t len = 0;
        const char *b = tokenizer_token_bytes(g_phi, want[i].id, &len);
        CHECK(b && len == want[i].len && !memcmp(b, want[i].bytes, len), "token %d", want[i].id);
    }
    size_t len;
    CHECK(!tokenizer_token_bytes(g_phi, 32011, &len) && !tokenizer_token_bytes(g_phi, -1, &len), "out of range");
    /* Round trip (the decoder's work): the bytes are " " + the text, spaces and byte fallbacks included. */
    const char *texts[] = {"Hello  world", "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\xa6\x80\n\ttabs", "\xe2\x96\x81x", "a\302\240b"};
    int_vec ids = {0};
    abc_error err;
    for (size_t i = 0; i < 4; i++) {
        char out[128];
        CHECK(phi_encode(texts[i], strlen(texts[i]), &ids, &err) == ABC_OK, "%s", err.message);
        size_t n = phi_detokenize(&ids, out, sizeof out);
        /* A literal ▁ in the text is the same token as a space, so it comes back as a space. */
        char want_text[128];
        snprintf(want_text, sizeof want_text, " %s", i == 2 ? " x" : texts[i]);
        CHECK(n == strlen(want_text) && !memcmp(out, want_text, n), "round trip %zu", i);
    }
    int_vec_free(&ids);
}

/* Where transformers.js (the corpus generator) and HF differ: rstrip swallows Rust's whitespace
 * (char::is_whitespace: U+0085 yes, U+FEFF no). Also the HF rules the corpus shows, by hand. */
static void test_sp_added_tokens(void) {
    int_vec ids = {0}, rest = {0};
    abc_error err;
    /* <|end|> has rstrip: "\xc2\x85" (U+0085 NEL) is swallowed, so "x" starts a new piece: ▁x. */
    const char *nel = "<|end|>\xc2\x85x";
    static const int32_t want_nel[] = {32007, 921};
    CHECK(phi_encode(nel, strlen(nel), &ids, &err) == ABC_OK && ids_are(&ids, want_nel, 2), "U+0085 stripped");
    const char *bom = "<|end|>\xef\xbb\xbfx";
    CHECK(phi_encode(bom, strlen(bom), &ids, &err) == ABC_OK, "%s", err.message);
    CHECK(tokenizer_encode(g_phi, bom + 7, strlen(bom) - 7, &rest, &err) == ABC_OK, "%s", err.message);
    CHECK(ids.len == rest.len + 1 && ids.data[0] == 32007 && !memcmp(ids.data + 1, rest.data, rest.len * 4), "U+FEFF kept");
    /* <s> has no rstrip: the space after it is a piece of its own, "▁▁". Each piece gets "▁". */
    const char *s = "<s> a<s>b";
    static const int32_t want_s[] = {1, 29871, 263, 1, 289};
    CHECK(phi_encode(s, strlen(s), &ids, &err) == ABC_OK && ids.len == 5, "<s> pieces");
    CHECK(ids.len >= 1 && ids.data[0] == 1 && ids.data[3] == 1 && ids.data[4] == want_s[4], "<s> pieces ids");
    int_vec_free(&ids);
    int_vec_free(&rest);
}

static void test_sp_invalid_and_long(void) {
    int_vec ids = {0};
    abc_error err;
    CHECK(phi_encode("ab\xff", 3, &ids, &err) == ABC_ERR_UTF8 && strstr(err.message, "offset 2"), "invalid UTF-8");
    CHECK(phi_encode("\xed\xa0\x80", 3, &ids, &err) == ABC_ERR_UTF8, "surrogate");
    CHECK(phi_encode(NULL, 0, &ids, &err) == ABC_OK && ids.len == 0, "empty");
    /* 200 kB without a space is one BPE word: must stay O(n log n). */
    size_t n = 200000;
    char *word = malloc(n + 1);
    const char *kinds[] = {"a", "ab", "\xe4\xb8\xad", "\xf0\x9f\xa6\x80", "\xe9\xbe\x98z"};
    for (size_t k = 0; k < 5; k++) {
        size_t kl = strlen(kinds[k]), len = 0;
        while (len + kl <= n) {
            memcpy(word + len, kinds[k], kl);
            len += kl;
        }
        double t = now_seconds();
        CHECK(phi_encode(word, len, &ids, &err) == ABC_OK, "%s", err.message);
        t = now_seconds() - t;
        CHECK(t < 2.0, "%zu bytes of \"%s\" took %.3f s", len, kinds[k], t);
        printf("     %zu bytes of \"%s\" repeated: %zu tokens in %.3f s (sanitized build)\n", len, kinds[k], ids.len, t);
        char *out = malloc(len + 8);
        size_t m = phi_detokenize(&ids, out, len + 8);
        CHECK(m == len + 1 && out[0] == ' ' && !memcmp(out + 1, word, len), "round trip of %s", kinds[k]);
        free(out);
    }
    free(word);
    int_vec_free(&ids);
}

/* A copy of the Phi tokenizer's weight file in which tensor `name` has other data or shape. */
static void expect_phi_error(const char *name, const void *data, int64_t shape0, const char *fragment) {
    weight_file wf = g_phi_wf;
    tensor *ts = malloc(wf.n_tensors * sizeof *ts);
    memcpy(ts, wf.tensors, wf.n_tensors * sizeof *ts);
    for (uint32_t i = 0; i < wf.n_tensors; i++)
        if (ts[i].name_len == strlen(name) && !memcmp(ts[i].name, name, ts[i].name_len)) {
            if (data) ts[i].data = data;
            if (shape0) ts[i].shape[0] = shape0;
        }
    wf.tensors = ts;
    tokenizer *tok = (tokenizer *)1;
    abc_error err = {0};
    abc_status st = tokenizer_load(&wf, &tok, &err);
    CHECK(st != ABC_OK && tok == NULL, "%s: accepted", fragment);
    CHECK(strstr(err.message, fragment) != NULL, "message '%s' lacks '%s'", err.message, fragment);
    if (st == ABC_OK) tokenizer_free(tok);
    free(ts);
}

static void test_sp_load_validation(void) {
    const tensor *bf = wf_tensor(&g_phi_wf, "tokenizer.byte_fallback"), *ch = wf_tensor(&g_phi_wf, "tokenizer.sp.chars");
    CHECK(bf && ch, "tensors");
    if (!bf || !ch) return;
    int32_t fb[256];
    memcpy(fb, bf->data, sizeof fb);
    fb[65] = 66;
    expect_phi_error("tokenizer.byte_fallback", fb, 0, "byte_fallback: entry 65");
    fb[65] = 99999;
    expect_phi_error("tokenizer.byte_fallback", fb, 0, "byte_fallback: entry 65");
    expect_phi_error("tokenizer.byte_fallback", NULL, 255, "256 entries");
    size_t n = (size_t)ch->shape[0];
    int32_t *c = malloc(n * 2 * sizeof *c);
    memcpy(c, ch->data, n * 2 * sizeof *c);
    for (int k = 0; k < 2; k++) { /* swap rows 10 and 11 */
        int32_t t = c[20 + k];
        c[20 + k] = c[22 + k];
        c[22 + k] = t;
    }
    expect_phi_error("tokenizer.sp.chars", c, 0, "order");
    memcpy(c, ch->data, n * 2 * sizeof *c);
    c[21] = c[23];
    expect_phi_error("tokenizer.sp.chars", c, 0, "is not U+");
    memcpy(c, ch->data, n * 2 * sizeof *c);
    c[2 * (n - 1)] = 0x110000;
    expect_phi_error("tokenizer.sp.chars", c, 0, "out of range");
    c[2 * (n - 1) + 1] = -4;
    c[2 * (n - 1)] = 0x10FFFF;
    expect_phi_error("tokenizer.sp.chars", c, 0, "bad id");
    free(c);
    expect_phi_error("tokenizer.sp.chars", NULL, 40000, "n <= the vocabulary size");
    const tensor *strip = wf_tensor(&g_phi_wf, "tokenizer.added.strip");
    CHECK(strip != NULL, "strip tensor");
    if (strip) {
        int32_t s[14];
        memcpy(s, strip->data, sizeof s);
        s[3] = 4;
        expect_phi_error("tokenizer.added.strip", s, 0, "bad flags");
        expect_phi_error("tokenizer.added.strip", NULL, 13, "disagree");
    }
    /* Metadata that does not go together, and a bad BOS id. */
    weight_file wf = g_phi_wf;
    meta_entry *m = malloc(wf.n_meta * sizeof *m);
    memcpy(m, wf.meta, wf.n_meta * sizeof *m);
    wf.meta = m;
    int64_t bos = 40000;
    for (uint32_t i = 0; i < wf.n_meta; i++) {
        if (m[i].key_len == 16 && !memcmp(m[i].key, "tokenizer.bos_id", 16)) m[i].payload = &bos;
        if (m[i].key_len == 22 && !memcmp(m[i].key, "tokenizer.pretokenizer", 22)) m[i].payload = "qwen2", m[i].count = 5;
    }
    tokenizer *tok = NULL;
    abc_error err = {0};
    CHECK(tokenizer_load(&wf, &tok, &err) == ABC_ERR_UNSUPPORTED && strstr(err.message, "does not go with"), "%s", err.message);
    for (uint32_t i = 0; i < wf.n_meta; i++)
        if (m[i].key_len == 22 && !memcmp(m[i].key, "tokenizer.pretokenizer", 22)) m[i].payload = "none", m[i].count = 4;
    CHECK(tokenizer_load(&wf, &tok, &err) == ABC_ERR_FORMAT && strstr(err.message, "bos_id"), "%s", err.message);
    free(m);
}

static void test_sp_allocation_failures(void) {
    check_allocation_failures(&g_phi_wf, "Hello <|user|> caf\xc3\xa9 \xf0\x9f\xa6\x80 world 123   \n x<|end|>");
}

static void test_sentencepiece(void) {
    abc_error err;
    abc_status st = weight_file_open(PHI_DIR "/tokenizer.abc", &g_phi_wf, &err);
    CHECK(st == ABC_OK, "%s", err.message);
    if (st != ABC_OK) return;
    st = tokenizer_load(&g_phi_wf, &g_phi, &err);
    CHECK(st == ABC_OK, "%s", err.message);
    if (st == ABC_OK) {
        test_sp_manifest_prompts();
        test_sp_cases();
        test_sp_token_bytes();
        test_sp_added_tokens();
        test_sp_invalid_and_long();
        test_sp_load_validation();
        test_sp_allocation_failures();
        tokenizer_free(g_phi);
    }
    weight_file_close(&g_phi_wf);
}

int main(void) {
    abc_error err;
    abc_status st = weight_file_open(TINY_MODEL, &g_wf, &err);
    if (st != ABC_OK) {
        fprintf(stderr, "cannot open %s (make test builds it): %s\n", TINY_MODEL, err.message);
        printf("RESULT 0 1\n");
        return 1;
    }
    st = tokenizer_load(&g_wf, &g_tok, &err);
    if (st != ABC_OK) {
        fprintf(stderr, "tokenizer_load: %s\n", err.message);
        weight_file_close(&g_wf);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN_TEST(test_unicode_classes);
    RUN_TEST(test_pretokenizer_regex);
    RUN_TEST(test_fixture_cases);
    RUN_TEST(test_manifest_prompts);
    RUN_TEST(test_corpus);
    RUN_TEST(test_nfc_normalization_test);
    RUN_TEST(test_nfc_in_encode);
    RUN_TEST(test_added_tokens);
    RUN_TEST(test_invalid_utf8);
    RUN_TEST(test_embedded_nul);
    RUN_TEST(test_large_input);
    RUN_TEST(test_long_word);
    RUN_TEST(test_bpe_rules);
    RUN_TEST(test_load_validation);
    RUN_TEST(test_allocation_failures);
    RUN_TEST(test_threads);
    RUN_TEST(test_public_api);
    RUN_TEST(test_sentencepiece);
    tokenizer_free(g_tok);
    weight_file_close(&g_wf);
    return test_summary();
}
