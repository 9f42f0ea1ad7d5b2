/* Strict recursive-descent JSON parser. Every byte is checked against the end of the buffer, the
 * nesting depth is bounded, strings are validated as UTF-8, and object keys must be unique (a
 * safetensors header or config with a repeated key is ambiguous, so it is refused). */
#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *start, *p, *end;
    char *err;
    size_t errsize;
    int depth, max_depth;
    size_t values, max_values, max_members; /* 0: no bound */
    int too_many;                           /* a limit, not the syntax, stopped the parse */
} parser;

static void set_error(parser *ps, const char *fmt, ...) {
    if (!ps->err || ps->errsize == 0) return;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* line/column make errors in hand-edited config files easy to find */
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    snprintf(ps->err, ps->errsize, "JSON: %s at line %zu column %zu (byte %zu)", msg, line, col,
             (size_t)(ps->p - ps->start));
}

static void *json_alloc(parser *ps, size_t n) {
    void *m = malloc(n ? n : 1);
    if (!m) set_error(ps, "out of memory");
    return m;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static void free_contents(json_value *v) {
    switch (v->type) {
    case JSON_STRING: free(v->string); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        for (size_t i = 0; i < v->n_items; i++) free_contents(&v->items[i]);
        free(v->items);
        if (v->keys) {
            for (size_t i = 0; i < v->n_items; i++) free(v->keys[i]);
            free(v->keys);
        }
        free(v->key_lens);
        break;
    default: break;
    }
    memset(v, 0, sizeof *v);
}

void json_free(json_value *v) {
    if (!v) return;
    free_contents(v);
    free(v);
}

static int parse_value(parser *ps, json_value *out);

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) { set_error(ps, "truncated \\u escape"); return -1; }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(ps->p[i]);
        if (d < 0) { set_error(ps, "invalid hex digit in \\u escape"); return -1; }
        v = v * 16 + (uint32_t)d;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (max n bytes), or 0 if invalid (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static size_t encode_utf8(uint32_t cp, char *dst) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string starting at the opening quote. The decoded text is never longer than the
 * source (escapes shrink, raw bytes are copied), so one allocation of the source span suffices. */
static int parse_string(parser *ps, char **out, size_t *out_len) {
    ps->p++; /* opening quote */
    const char *scan = ps->p;
    while (scan < ps->end && *scan != '"') {
        if (*scan == '\\') scan++;
        scan++;
    }
    if (scan >= ps->end) { set_error(ps, "unterminated string"); return -1; }
    size_t cap = (size_t)(scan - ps->p) + 1;
    char *buf = json_alloc(ps, cap);
    if (!buf) return -1;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { set_error(ps, "control character U+%04X in string must be escaped", c); goto fail; }
        if (c == '\\') {
            ps->p++;
            if (ps->p >= ps->end) { set_error(ps, "unterminated escape"); goto fail; }
            char e = *ps->p++;
            switch (e) {
            case '"': buf[n++] = '"'; break;
            case '\\': buf[n++] = '\\'; break;
            case '/': buf[n++] = '/'; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (read_hex4(ps, &cp) < 0) goto fail;
                if (cp >= 0xDC00 && cp <= 0xDFFF) { set_error(ps, "lone low surrogate \\u%04X", cp); goto fail; }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                        set_error(ps, "high surrogate \\u%04X not followed by a low surrogate", cp);
                        goto fail;
                    }
                    ps->p += 2;
                    if (read_hex4(ps, &lo) < 0) goto fail;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        set_error(ps, "high surrogate \\u%04X followed by \\u%04X, not a low surrogate", cp, lo);
                        goto fail;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* "\uXXXX" (6 bytes) or a 12-byte pair always encodes into fewer bytes */
                n += encode_utf8(cp, buf + n);
                break;
            }
            default: ps->p--; set_error(ps, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?'); goto fail;
            }
        } else if (c < 0x80) {
            buf[n++] = (char)c;
            ps->p++;
        } else {
            size_t len = utf8_sequence_length((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
            if (len == 0) { set_error(ps, "invalid UTF-8 in string"); goto fail; }
            memcpy(buf + n, ps->p, len);
            n += len;
            ps->p += len;
        }
    }
    ps->p++; /* closing quote (the scan above guaranteed it) */
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
fail:
    free(buf);
    return -1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Validates the RFC 8259 number grammar, then converts with strtod on a bounded copy. */
static int parse_number(parser *ps, json_value *out) {
    const char *s = ps->p, *q = ps->p;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !is_digit(*q)) { set_error(ps, "invalid number"); return -1; }
    if (*q == '0') q++;
    else while (q < ps->end && is_digit(*q)) q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || !is_digit(*q)) { ps->p = q; set_error(ps, "invalid number: digit expected after '.'"); return -1; }
        while (q < ps->end && is_digit(*q)) q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !is_digit(*q)) { ps->p = q; set_error(ps, "invalid number: digit expected in exponent"); return -1; }
        while (q < ps->end && is_digit(*q)) q++;
    }
    size_t len = (size_t)(q - s);
    char small[64];
    char *copy = len < sizeof small ? small : json_alloc(ps, len + 1);
    if (!copy) return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    out->type = JSON_NUMBER;
    out->number = strtod(copy, NULL);
    if (copy != small) free(copy);
    if (out->number - out->number != 0.0) { set_error(ps, "number out of range"); return -1; } /* inf */
    ps->p = q;
    return 0;
}

static int match_literal(parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) { set_error(ps, "invalid literal"); return -1; }
    ps->p += n;
    return 0;
}

/* Growable array of values (and keys) used while an array or object is being read. */
typedef struct {
    json_value *items;
    char **keys;
    size_t *key_lens;
    size_t n, cap;
} builder;

static int builder_push(parser *ps, builder *b, int with_keys) {
    if (b->n < b->cap) return 0;
    size_t cap = b->cap ? b->cap * 2 : 4;
    json_value *items = realloc(b->items, cap * sizeof *items);
    if (!items) { set_error(ps, "out of memory"); return -1; }
    b->items = items;
    if (with_keys) {
        char **keys = realloc(b->keys, cap * sizeof *keys);
        if (!keys) { set_error(ps, "out of memory"); return -1; }
        b->keys = keys;
        size_t *lens = realloc(b->key_lens, cap * sizeof *lens);
        if (!lens) { set_error(ps, "out of memory"); return -1; }
        b->key_lens = lens;
    }
    b->cap = cap;
    return 0;
}

static void builder_discard(builder *b) {
    for (size_t i = 0; i < b->n; i++) {
        free_contents(&b->items[i]);
        if (b->keys) free(b->keys[i]);
    }
    free(b->items);
    free(b->keys);
    free(b->key_lens);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Returns the index of a repeated key, or n if all keys are distinct (SIZE_MAX on OOM). */
static size_t find_duplicate_key(char **keys, const size_t *lens, size_t n) {
    if (n < 2) return n;
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (lens[i] == lens[j] && memcmp(keys[i], keys[j], lens[i]) == 0) return i;
        return n;
    }
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    size_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return SIZE_MAX;
    for (size_t i = 0; i < cap; i++) slots[i] = SIZE_MAX;
    size_t dup = n;
    for (size_t i = 0; i < n && dup == n; i++) {
        size_t s = (size_t)hash_bytes(keys[i], lens[i]) & (cap - 1);
        while (slots[s] != SIZE_MAX) {
            size_t j = slots[s];
            if (lens[i] == lens[j] && memcmp(keys[i], keys[j], lens[i]) == 0) { dup = i; break; }
            s = (s + 1) & (cap - 1);
        }
        if (dup == n) slots[s] = i;
    }
    free(slots);
    return dup;
}

static int parse_container(parser *ps, json_value *out, int is_object) {
    char close = is_object ? '}' : ']';
    if (++ps->depth > ps->max_depth) {
        ps->too_many = 1;
        set_error(ps, "nesting deeper than %d", ps->max_depth);
        return -1;
    }
    ps->p++;
    builder b = {0};
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            if (is_object && ps->max_members && b.n == ps->max_members) {
                ps->too_many = 1;
                set_error(ps, "more than %zu members in an object", ps->max_members);
                goto fail;
            }
            if (builder_push(ps, &b, is_object) < 0) goto fail;
            skip_ws(ps);
            if (is_object) {
                if (ps->p >= ps->end || *ps->p != '"') { set_error(ps, "object key (string) expected"); goto fail; }
                char *key;
                size_t key_len;
                if (parse_string(ps, &key, &key_len) < 0) goto fail;
                b.keys[b.n] = key;
                b.key_lens[b.n] = key_len;
                memset(&b.items[b.n], 0, sizeof b.items[b.n]);
                b.n++; /* the key is owned by the builder from here on */
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') { set_error(ps, "':' expected after object key"); goto fail; }
                ps->p++;
                skip_ws(ps);
                if (parse_value(ps, &b.items[b.n - 1]) < 0) goto fail;
            } else {
                memset(&b.items[b.n], 0, sizeof b.items[b.n]);
                if (parse_value(ps, &b.items[b.n]) < 0) goto fail;
                b.n++;
            }
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
            set_error(ps, is_object ? "',' or '}' expected in object" : "',' or ']' expected in array");
            goto fail;
        }
    }
    if (is_object) {
        size_t dup = find_duplicate_key(b.keys, b.key_lens, b.n);
        if (dup == SIZE_MAX) { set_error(ps, "out of memory"); goto fail; }
        if (dup < b.n) { set_error(ps, "duplicate object key \"%.60s\"", b.keys[dup]); goto fail; }
    }
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    out->items = b.items;
    out->keys = b.keys;
    out->key_lens = b.key_lens;
    out->n_items = b.n;
    if (!out->items) { /* empty container: keep a valid (non-NULL) pointer for callers */
        out->items = json_alloc(ps, sizeof(json_value));
        if (!out->items) { out->type = JSON_NULL; return -1; }
    }
    ps->depth--;
    return 0;
fail:
    builder_discard(&b);
    return -1;
}

static int parse_value(parser *ps, json_value *out) {
    memset(out, 0, sizeof *out);
    skip_ws(ps);
    if (ps->p >= ps->end) { set_error(ps, "unexpected end of input"); return -1; }
    if (ps->max_values && ++ps->values > ps->max_values) {
        ps->too_many = 1;
        set_error(ps, "more than %zu values", ps->max_values);
        return -1;
    }
    switch (*ps->p) {
    case '{': return parse_container(ps, out, 1);
    case '[': return parse_container(ps, out, 0);
    case '"':
        if (parse_string(ps, &out->string, &out->string_len) < 0) return -1;
        out->type = JSON_STRING;
        return 0;
    case 't': if (match_literal(ps, "true") < 0) return -1; out->type = JSON_BOOL; out->boolean = 1; return 0;
    case 'f': if (match_literal(ps, "false") < 0) return -1; out->type = JSON_BOOL; out->boolean = 0; return 0;
    case 'n': if (match_literal(ps, "null") < 0) return -1; out->type = JSON_NULL; return 0;
    default:
        if (*ps->p == '-' || is_digit(*ps->p)) return parse_number(ps, out);
        set_error(ps, "unexpected character '%c'", *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
        return -1;
    }
}

json_value *json_parse_limited(const char *text, size_t len, const json_limits *limits, char *err, size_t errsize,
                               int *too_many) {
    if (err && errsize) err[0] = '\0';
    if (too_many) *too_many = 0;
    if (!text) {
        if (err && errsize) snprintf(err, errsize, "JSON: no input");
        return NULL;
    }
    parser ps = {text, text, text + len, err, errsize, 0, JSON_MAX_DEPTH, 0, 0, 0, 0};
    if (limits) {
        if (limits->max_depth > 0 && limits->max_depth < JSON_MAX_DEPTH) ps.max_depth = limits->max_depth;
        ps.max_values = limits->max_values;
        ps.max_members = limits->max_members;
    }
    json_value *root = NULL;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) set_error(&ps, "byte order mark not allowed");
    else if ((root = json_alloc(&ps, sizeof *root)) && parse_value(&ps, root) < 0) {
        free(root);
        root = NULL;
    } else if (root) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            set_error(&ps, "unexpected data after the JSON value");
            json_free(root);
            root = NULL;
        }
    }
    if (!root && too_many) *too_many = ps.too_many;
    return root;
}

json_value *json_parse(const char *text, size_t len, char *err, size_t errsize) {
    return json_parse_limited(text, len, NULL, err, errsize, NULL);
}

int json_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence_length(u + i, n - i);
        if (len == 0) return 0;
        i += len;
    }
    return 1;
}

const json_value *json_get_n(const json_value *obj, const char *key, size_t key_len) {
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    for (size_t i = 0; i < obj->n_items; i++)
        if (obj->key_lens[i] == key_len && memcmp(obj->keys[i], key, key_len) == 0) return &obj->items[i];
    return NULL;
}

const json_value *json_get(const json_value *obj, const char *key) {
    return key ? json_get_n(obj, key, strlen(key)) : NULL;
}
