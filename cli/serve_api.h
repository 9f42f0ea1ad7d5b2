/* serve_api.h — the JSON body of POST /v1/embeddings decoded into abc inputs (README "Serving"):
 * OpenAI's {"input": ...} and vLLM's chat form {"messages": [...]}, with "return_multivector" (Jina's
 * API field) for the token vectors of multi-vector models, images from data: URLs (and file://
 * under --allow-local-files). No sockets and no model here, so the fuzz harness drives it directly. */
#ifndef ABC_SERVE_API_H
#define ABC_SERVE_API_H
#include "abc.h"
#include "../model_convert/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;          /* HTTP status */
    const char *type;    /* OpenAI error type: invalid_request_error, authentication_error, ... */
    const char *param;   /* the request field at fault, or NULL */
    const char *code;    /* short machine-readable code, or NULL */
    char message[384];
} api_error;

typedef struct {
    size_t max_inputs;        /* inputs per request */
    const char *allow_dir;    /* realpath of --allow-local-files, or NULL (file:// refused) */
    size_t max_file_bytes;    /* largest file:// image read */
    const char *model_name;   /* the served model's id; a request naming another model gets 404 */
    int embedding_dim;        /* for "dimensions" */
    const int *matryoshka;    /* the file's Matryoshka dims (n_matryoshka), or NULL: any 1..embedding_dim */
    int n_matryoshka;
    const char *const *tasks; /* the file's task adapters, NULL-terminated (empty or NULL: none) */
    int multi_vector_dim;     /* the token vectors' width (abc_model_multi_vector_dim), 0: none */
    const char *preset;       /* for the error messages */
} api_config;

typedef struct {
    const char *text;         /* NUL-terminated UTF-8 (owned by the request), or NULL */
    uint8_t *image;           /* encoded image bytes (owned), or NULL */
    size_t image_size;
} api_item;

typedef struct {
    json_value *doc;
    api_item *items;
    size_t n_items;
    char **owned_texts;       /* joined message texts */
    size_t n_owned;
    bool base64;              /* encoding_format "base64" */
    int dimensions;           /* 0: the model's full dimension */
    const char *task;         /* "task" (owned by doc), or NULL: the file's default */
    abc_role role;            /* "abc_role" (default auto) */
    bool chat;                /* the request used "messages" */
    bool multi_vector;        /* "return_multivector": true — the [T, D] token vectors per input */
} api_request;

/* Decodes and validates a request body. On failure returns false with *e filled (the caller answers
 * e->status); *req is then empty. Release with api_request_free either way. */
bool api_parse_embeddings(const char *body, size_t len, const api_config *cfg, api_request *req, api_error *e);
void api_request_free(api_request *req);

void api_set_error(api_error *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

#endif
