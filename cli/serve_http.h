/* serve_http.h — the HTTP/1.1 request reader of `abc serve`, and base64. No sockets here: the parser
 * works on a byte buffer the caller fills, so it can be fuzzed on its own (tests/fuzz). */
#ifndef ABC_SERVE_HTTP_H
#define ABC_SERVE_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t max_header_bytes;  /* request line + headers (431 beyond) */
    size_t max_headers;       /* header fields (431 beyond) */
    size_t max_body;          /* decoded body bytes (413 beyond) */
} http_limits;

enum { HTTP_NEED_MORE = 0, HTTP_DONE = 1, HTTP_ERROR = -1 };

/* Parser state and the parsed request. Reset with http_parser_init before each request. */
typedef struct {
    http_limits lim;
    /* state */
    int stage;               /* 0 head, 1 body by length, 2 chunked, 3 done */
    size_t scan;             /* where the search for the end of the head resumes */
    size_t pos;              /* chunked: raw offset of the next unread byte */
    size_t chunk_left;       /* chunked: data bytes left in the current chunk */
    int cstate;              /* chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers */
    size_t trailer_bytes;
    /* the request */
    char method[16];
    char path[2048];         /* request target, origin-form ("/v1/embeddings?x=y") */
    int minor;               /* HTTP/1.<minor> */
    size_t head_len;         /* bytes of request line + headers, including the blank line */
    bool has_length, chunked, keep_alive, expect_continue;
    uint64_t content_length;
    char authorization[512]; /* the Authorization value (cut: a longer one never matches a key) */
    bool auth_present, auth_too_long;
    size_t body_off, body_len; /* the body is buf[body_off .. body_off+body_len) once done */
    size_t consumed;         /* raw bytes of this request (a pipelined next request follows) */
    /* on HTTP_ERROR */
    int status;              /* 400, 413, 414, 417, 431, 501, 505 */
    const char *error;       /* constant message */
} http_request;

void http_parser_init(http_request *r, const http_limits *lim);

/* Parses buf[0..len) (the whole request so far; call again with more bytes after HTTP_NEED_MORE,
 * same buffer start). Chunked bodies are decoded in place inside buf, which is why buf is not const.
 * HTTP_DONE: the request is complete (fields above); HTTP_ERROR: r->status, r->error. */
int http_parse(http_request *r, char *buf, size_t len);

/* Whether the head has been read completely (the body may still be arriving). */
static inline bool http_head_done(const http_request *r) { return r->stage >= 1; }

/* Standard base64 (RFC 4648 alphabet, '=' padding optional, no whitespace). Returns the decoded
 * length, or (size_t)-1 for invalid input. out must hold base64_decoded_max(n) bytes. */
size_t base64_decode(const char *in, size_t n, uint8_t *out);
static inline size_t base64_decoded_max(size_t n) { return n / 4 * 3 + 3; }
/* Encodes n bytes; out must hold 4·ceil(n/3) bytes. Returns the length written (no NUL). */
size_t base64_encode(const uint8_t *in, size_t n, char *out);

/* Constant-time comparison (time depends on the lengths only). */
bool ct_equal(const char *a, size_t na, const char *b, size_t nb);

const char *http_reason(int status);

#endif
