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

json_value *json_parse(const char *text, size_t len, char *err, size_t errsize); /* NULL on error, message in err */
void json_free(json_value *v);
const json_value *json_get(const json_value *obj, const char *key); /* NULL if absent or obj not an object */

#endif
