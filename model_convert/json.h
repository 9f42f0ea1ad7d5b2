/* Minimal strict JSON parser (RFC 8259) for the converter: config files, safetensors headers,
 * tokenizer.json. Strings are decoded to UTF-8; invalid UTF-8 and lone surrogates are rejected. */
#ifndef ABC_CONVERT_JSON_H
#define ABC_CONVERT_JSON_H
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;
typedef struct json_value json_value;
struct json_value {
    json_type type;
    double number; int boolean;
    char *string; size_t string_len;   /* decoded UTF-8 (\uXXXX incl. surrogate pairs), NUL-terminated */
    json_value *items; size_t n_items; /* array elements, or object values */
    char **keys; size_t *key_lens;     /* object keys (decoded), parallel to items */
};

/* Nesting deeper than this is rejected (protects the recursive parser's stack). */
#define JSON_MAX_DEPTH 256

/* Bounds for untrusted documents (`abc serve` request bodies), so that a body of a few MB cannot expand
 * into GB of values. 0 means no bound (max_depth 0: JSON_MAX_DEPTH). */
typedef struct {
    int max_depth;        /* deepest nesting accepted (at most JSON_MAX_DEPTH) */
    size_t max_values;    /* values in the whole document */
    size_t max_members;   /* members of one object (arrays are bounded by max_values only) */
} json_limits;

json_value *json_parse(const char *text, size_t len, char *err, size_t errsize); /* NULL on error, message in err */
/* The same within `limits` (NULL: none but JSON_MAX_DEPTH); *too_many (when not NULL) tells whether a
 * limit, not the syntax, was the reason for a NULL. */
json_value *json_parse_limited(const char *text, size_t len, const json_limits *limits, char *err, size_t errsize,
                               int *too_many);
/* Whether s[0..n) is valid UTF-8 (strict: no overlong forms, surrogates, or code points past U+10FFFF). */
int json_utf8_valid(const char *s, size_t n);
void json_free(json_value *v);
const json_value *json_get(const json_value *obj, const char *key); /* NULL if absent or obj not an object */
/* The same by explicit length: a key may hold U+0000 (tokenizer vocabularies can), which a C-string
 * lookup cannot name. */
const json_value *json_get_n(const json_value *obj, const char *key, size_t key_len);

#endif
