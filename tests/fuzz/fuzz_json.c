/* Fuzz target: the converter's JSON parser (model_convert/json.c: config.json, tokenizer.json,
 * adapter_config.json, safetensors headers). A parsed document is walked to the end, keys looked up. */
#define _POSIX_C_SOURCE 200809L
#include "model_convert/json.c"
#include "model_convert/util.c"
#include "model_convert/dtype.c"
#include "tests/fuzz/fuzz_util.h"

static size_t walk(const json_value *v, int depth) {
    FUZZ_ASSERT(depth <= JSON_MAX_DEPTH + 1, "depth %d beyond the limit", depth);
    size_t n = 1;
    if (v->type == JSON_STRING) FUZZ_ASSERT(v->string && v->string[v->string_len] == 0, "string not terminated");
    if (v->type == JSON_NUMBER) {
        int64_t i;
        (void)cv_json_int(v, INT64_MIN, INT64_MAX, &i);
    }
    for (size_t i = 0; i < v->n_items; i++) n += walk(&v->items[i], depth + 1);
    if (v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->n_items; i++) {
            /* keys are unique, so the lookup by length finds exactly this member */
            FUZZ_ASSERT(json_get_n(v, v->keys[i], v->key_lens[i]) == &v->items[i], "key %zu not found", i);
            /* a C-string lookup cannot name a key holding U+0000 (it may find another key, the prefix) */
            if (strlen(v->keys[i]) == v->key_lens[i])
                FUZZ_ASSERT(json_get(v, v->keys[i]) == &v->items[i], "key %zu not found by its C string", i);
        }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256] = "";
    json_value *v = json_parse((const char *)data, size, err, sizeof err);
    if (v) {
        walk(v, 0);
        json_free(v);
    } else {
        FUZZ_ASSERT(err[0], "rejected without a message");
    }
    return 0;
}
