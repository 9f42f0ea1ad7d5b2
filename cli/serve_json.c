/* serve_json.c — strict recursive-descent JSON reader for `abc serve` request bodies (see serve_json.h).
 * Every read is checked against the end of the buffer; recursion is bounded by limits->max_depth. */
#include "serve_json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *start, *p, *end;
    sj_limits lim;
    size_t values;
    int depth;
    char *err;
    size_t errsize;
    int too_many;
} sj_parser;

sj_limits sj_default_limits(void) {
    sj_limits l;
    l.max_depth = 32;
    l.max_values = 262144;
    l.max_members = 256;
    return l;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int sj_fail(sj_parser *ps, const char *fmt, ...) {
    if (ps->err && ps->errsize && !ps->err[0]) {
        char msg[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(ps->err, ps->errsize, "invalid JSON: %s at byte %zu", msg, (size_t)(ps->p - ps->start));
    }
    return -1;
}

static void sj_free_contents(sj_value *v) {
    if (v->type == SJ_STRING) free(v->str);
    if (v->type == SJ_ARRAY || v->type == SJ_OBJECT) {
        for (size_t i = 0; i < v->len; i++) {
            sj_free_contents(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
        free(v->key_lens);
    }
    memset(v, 0, sizeof *v);
}

void sj_free(sj_value *v) {
    if (!v) return;
    sj_free_contents(v);
    free(v);
}

static size_t sj_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int sj_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = sj_utf8_len(u + i, n - i);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

static void sj_skip_ws(sj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int json_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int sj_hex4(sj_parser *ps, uint32_t *out) {
    if (ps->end - ps->p < 4) return sj_fail(ps, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = json_hexval(ps->p[i]);
        if (d < 0) return sj_fail(ps, "bad hex digit in \\u escape");
        v = v << 4 | (uint32_t)d;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static size_t sj_put_utf8(uint32_t cp, char *d) {
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | cp >> 6); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12); d[1] = (char)(0x80 | (cp >> 6 & 0x3F)); d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18); d[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    d[2] = (char)(0x80 | (cp >> 6 & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote. The decoded string is never longer than its source span, so one allocation
 * of that span's size is enough. */
static int sj_parse_string(sj_parser *ps, char **out, size_t *out_len) {
    ps->p++;
    const char *q = ps->p;
    while (q < ps->end && *q != '"') q += (*q == '\\') ? 2 : 1;
    if (q >= ps->end) return sj_fail(ps, "unterminated string");
    char *buf = malloc((size_t)(q - ps->p) + 1);
    if (!buf) return sj_fail(ps, "out of memory");
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { sj_fail(ps, "unescaped control character in string"); goto bad; }
        if (c == '\\') {
            char e = ps->p[1]; /* in bounds: the scan above stopped at a quote after every backslash pair */
            ps->p += 2;
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
                uint32_t cp, lo;
                if (sj_hex4(ps, &cp) < 0) goto bad;
                if (cp >= 0xDC00 && cp <= 0xDFFF) { sj_fail(ps, "lone low surrogate"); goto bad; }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                        sj_fail(ps, "lone high surrogate");
                        goto bad;
                    }
                    ps->p += 2;
                    if (sj_hex4(ps, &lo) < 0) goto bad;
                    if (lo < 0xDC00 || lo > 0xDFFF) { sj_fail(ps, "high surrogate without low surrogate"); goto bad; }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                n += sj_put_utf8(cp, buf + n);
                break;
            }
            default: ps->p--; sj_fail(ps, "invalid escape"); goto bad;
            }
        } else {
            size_t l = sj_utf8_len((const unsigned char *)ps->p, (size_t)(q - ps->p));
            if (!l) { sj_fail(ps, "invalid UTF-8 in string"); goto bad; }
            memcpy(buf + n, ps->p, l);
            n += l;
            ps->p += l;
        }
        if (ps->p > q) { sj_fail(ps, "unterminated string"); goto bad; } /* an escape ran past the scan's quote */
    }
    ps->p++;
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return 0;
bad:
    free(buf);
    return -1;
}

static int sj_is_digit(char c) { return c >= '0' && c <= '9'; }

static int sj_parse_number(sj_parser *ps, sj_value *v) {
    const char *s = ps->p, *q = ps->p;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !sj_is_digit(*q)) return sj_fail(ps, "invalid number");
    if (*q == '0') q++;
    else while (q < ps->end && sj_is_digit(*q)) q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || !sj_is_digit(*q)) return sj_fail(ps, "invalid number");
        while (q < ps->end && sj_is_digit(*q)) q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !sj_is_digit(*q)) return sj_fail(ps, "invalid number");
        while (q < ps->end && sj_is_digit(*q)) q++;
    }
    size_t n = (size_t)(q - s);
    if (n > 400) return sj_fail(ps, "number too long");
    char tmp[401];
    memcpy(tmp, s, n);
    tmp[n] = 0;
    v->type = SJ_NUMBER;
    v->number = strtod(tmp, NULL);
    if (v->number - v->number != 0.0) return sj_fail(ps, "number out of range");
    ps->p = q;
    return 0;
}

static int sj_literal(sj_parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return sj_fail(ps, "unexpected character");
    ps->p += n;
    return 0;
}

static int sj_parse_value(sj_parser *ps, sj_value *v);

/* Grows v->items (and keys for objects) to hold one more member. */
static int sj_grow(sj_parser *ps, sj_value *v, size_t *cap, int keys) {
    if (v->len < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    sj_value *items = realloc(v->items, nc * sizeof *items);
    if (!items) return sj_fail(ps, "out of memory");
    v->items = items;
    if (keys) {
        char **k = realloc(v->keys, nc * sizeof *k);
        if (!k) return sj_fail(ps, "out of memory");
        v->keys = k;
        size_t *kl = realloc(v->key_lens, nc * sizeof *kl);
        if (!kl) return sj_fail(ps, "out of memory");
        v->key_lens = kl;
    }
    *cap = nc;
    return 0;
}

static int sj_parse_container(sj_parser *ps, sj_value *v, int object) {
    char close = object ? '}' : ']';
    size_t cap = 0;
    v->type = object ? SJ_OBJECT : SJ_ARRAY;
    if (++ps->depth > ps->lim.max_depth) {
        ps->too_many = 1;
        return sj_fail(ps, "nested deeper than %d", ps->lim.max_depth);
    }
    ps->p++;
    sj_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        if (sj_grow(ps, v, &cap, object) < 0) return -1;
        sj_value *item = &v->items[v->len];
        memset(item, 0, sizeof *item);
        if (object) {
            char *key;
            size_t klen;
            sj_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') return sj_fail(ps, "object key expected");
            if (v->len >= ps->lim.max_members) {
                ps->too_many = 1;
                return sj_fail(ps, "more than %zu members in an object", ps->lim.max_members);
            }
            if (sj_parse_string(ps, &key, &klen) < 0) return -1;
            for (size_t i = 0; i < v->len; i++) /* bounded by max_members */
                if (v->key_lens[i] == klen && memcmp(v->keys[i], key, klen) == 0) {
                    free(key);
                    return sj_fail(ps, "duplicate key");
                }
            sj_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                return sj_fail(ps, "':' expected");
            }
            ps->p++;
            v->keys[v->len] = key;
            v->key_lens[v->len] = klen;
        }
        v->len++; /* counted before parsing so that free_contents releases a half-built member */
        if (sj_parse_value(ps, item) < 0) return -1;
        sj_skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return sj_fail(ps, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int sj_parse_value(sj_parser *ps, sj_value *v) {
    if (++ps->values > ps->lim.max_values) {
        ps->too_many = 1;
        return sj_fail(ps, "more than %zu values", ps->lim.max_values);
    }
    sj_skip_ws(ps);
    if (ps->p >= ps->end) return sj_fail(ps, "value expected");
    switch (*ps->p) {
    case '{': return sj_parse_container(ps, v, 1);
    case '[': return sj_parse_container(ps, v, 0);
    case '"':
        v->type = SJ_STRING;
        return sj_parse_string(ps, &v->str, &v->len);
    case 't': v->type = SJ_BOOL; v->boolean = 1; return sj_literal(ps, "true");
    case 'f': v->type = SJ_BOOL; return sj_literal(ps, "false");
    case 'n': v->type = SJ_NULL; return sj_literal(ps, "null");
    default: return sj_parse_number(ps, v);
    }
}

sj_value *sj_parse(const char *text, size_t len, const sj_limits *limits, char *err, size_t errsize,
                   int *too_many) {
    sj_parser ps;
    memset(&ps, 0, sizeof ps);
    ps.start = ps.p = text;
    ps.end = text + len;
    ps.lim = limits ? *limits : sj_default_limits();
    ps.err = err;
    ps.errsize = errsize;
    if (err && errsize) err[0] = 0;
    if (too_many) *too_many = 0;
    sj_value *v = calloc(1, sizeof *v);
    if (!v) {
        sj_fail(&ps, "out of memory");
        return NULL;
    }
    if (sj_parse_value(&ps, v) == 0) {
        sj_skip_ws(&ps);
        if (ps.p == ps.end) return v;
        sj_fail(&ps, "trailing characters after the value");
    }
    if (too_many) *too_many = ps.too_many;
    sj_free(v);
    return NULL;
}

const sj_value *sj_get(const sj_value *obj, const char *key) {
    if (!obj || obj->type != SJ_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->key_lens[i] == n && memcmp(obj->keys[i], key, n) == 0) return &obj->items[i];
    return NULL;
}
