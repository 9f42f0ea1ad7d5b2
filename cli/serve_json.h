/* serve_json.h — the strict JSON reader of `abc serve` (RFC 8259), sized for untrusted request bodies:
 * nesting depth, the number of values and the members per object are bounded so that a body of a few
 * MB cannot expand into GB of nodes; strings must be valid UTF-8 (no lone surrogates); duplicate
 * object keys are refused (a repeated "input" would be ambiguous). Names are prefixed sj_ so the CLI's
 * other commands may link their own JSON code beside it. */
#ifndef ABC_SERVE_JSON_H
#define ABC_SERVE_JSON_H
#include <stddef.h>

typedef enum { SJ_NULL, SJ_BOOL, SJ_NUMBER, SJ_STRING, SJ_ARRAY, SJ_OBJECT } sj_type;

typedef struct sj_value sj_value;
struct sj_value {
    sj_type type;
    int boolean;
    double number;
    char *str;        /* SJ_STRING: decoded UTF-8, NUL-terminated (may contain NUL: use len) */
    size_t len;       /* SJ_STRING: bytes; SJ_ARRAY/SJ_OBJECT: members */
    sj_value *items;  /* SJ_ARRAY elements, SJ_OBJECT values */
    char **keys;      /* SJ_OBJECT keys, parallel to items */
    size_t *key_lens;
};

typedef struct {
    int max_depth;        /* deepest nesting accepted */
    size_t max_values;    /* values in the whole document */
    size_t max_members;   /* members of one object (arrays are bounded by max_values only) */
} sj_limits;

sj_limits sj_default_limits(void);

/* Parses text[0..len) completely (only whitespace may follow the value). NULL on error, with a short
 * message in err; *too_many is set when a size limit (not the syntax) was the reason. */
sj_value *sj_parse(const char *text, size_t len, const sj_limits *limits, char *err, size_t errsize,
                   int *too_many);
void sj_free(sj_value *v);
/* The member `key` of an object; NULL when absent or when obj is not an object. */
const sj_value *sj_get(const sj_value *obj, const char *key);

/* Whether s[0..n) is valid UTF-8 (strict: no overlongs, surrogates, or code points past U+10FFFF). */
int sj_utf8_valid(const char *s, size_t n);

#endif
