/* Unit tests of what `abc serve` does with request bytes before a model runs (cli/serve_http.c,
 * model_convert/json.c, cli/serve_api.c): HTTP framing field by field, chunked decoding fed one byte at a time,
 * base64 against the RFC 4648 test vectors, JSON escapes/numbers/limits, and /v1/embeddings decoding
 * (input, messages, data: and file:// URLs). tests/test_serve.sh covers the same over real sockets. */
#define _XOPEN_SOURCE 700
#include "cli/serve_api.c"
#include "cli/serve_http.c"
#include "model_convert/json.c"
#include "tests/test.h"

#include <stdlib.h>
#include <unistd.h>

static const http_limits LIM = {1024, 8, 4096};

/* Parses the whole of `text` at once; returns the outcome, *r holds the request. buf must outlive r. */
static int parse_all(const char *text, char **buf, http_request *r) {
    size_t n = strlen(text);
    *buf = malloc(n + 1);
    memcpy(*buf, text, n + 1);
    http_parser_init(r, &LIM);
    return http_parse(r, *buf, n);
}

static void test_base64_rfc4648(void) {
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        size_t n = base64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
        CHECK(n == strlen(enc[i]) && memcmp(out, enc[i], n) == 0, "encode '%s'", plain[i]);
        size_t d = base64_decode(enc[i], strlen(enc[i]), dec);
        CHECK(d == strlen(plain[i]) && memcmp(dec, plain[i], d) == 0, "decode '%s'", enc[i]);
        /* padding is optional */
        size_t m = strlen(enc[i]);
        while (m && enc[i][m - 1] == '=') m--;
        d = base64_decode(enc[i], m, dec);
        CHECK(d == strlen(plain[i]) && memcmp(dec, plain[i], d) == 0, "decode '%.*s' unpadded", (int)m, enc[i]);
    }
    static const char *bad[] = {"Zg=", "Z", "Zh==", "Zm9v!", "Zm 9v", "Zm9vYg===", "Zm9v\n", "Zm9-", "=Zm9", "Zm=v"};
    for (int i = 0; i < 10; i++) {
        uint8_t dec[16];
        CHECK(base64_decode(bad[i], strlen(bad[i]), dec) == (size_t)-1, "'%s' must be refused", bad[i]);
    }
}

static void test_ct_equal(void) {
    CHECK(ct_equal("key", 3, "key", 3), "equal");
    CHECK(!ct_equal("key", 3, "kez", 3), "last byte differs");
    CHECK(!ct_equal("key", 3, "keyx", 4), "longer");
    CHECK(!ct_equal("", 0, "k", 1), "empty vs one byte");
    CHECK(ct_equal("", 0, "", 0), "both empty");
}

static void test_http_request_fields(void) {
    char *buf;
    http_request r;
    int rc = parse_all("GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer k  \r\n\r\nNEXT", &buf, &r);
    CHECK(rc == HTTP_DONE, "rc %d", rc);
    CHECK(strcmp(r.method, "GET") == 0 && strcmp(r.path, "/v1/models?x=1") == 0 && r.minor == 1, "request line");
    CHECK(r.keep_alive && !r.has_length && !r.chunked && r.body_len == 0, "defaults");
    CHECK(r.auth_present && strcmp(r.authorization, "Bearer k") == 0, "authorization '%s' (OWS trimmed)", r.authorization);
    CHECK(r.consumed == strlen(buf) - 4, "consumed %zu: the pipelined 'NEXT' is left", r.consumed);
    free(buf);

    rc = parse_all("POST /v1/embeddings HTTP/1.1\r\ncontent-length: 5\r\nConnection: Close\r\n\r\nhello", &buf, &r);
    CHECK(rc == HTTP_DONE && r.body_len == 5 && memcmp(buf + r.body_off, "hello", 5) == 0, "body by length");
    CHECK(!r.keep_alive, "Connection: close (case-insensitive)");
    free(buf);

    rc = parse_all("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel", &buf, &r);
    CHECK(rc == HTTP_NEED_MORE, "incomplete body: need more (%d)", rc);
    free(buf);

    rc = parse_all("GET / HTTP/1.0\r\n\r\n", &buf, &r);
    CHECK(rc == HTTP_DONE && !r.keep_alive && r.minor == 0, "HTTP/1.0 closes by default");
    free(buf);
    rc = parse_all("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &buf, &r);
    CHECK(rc == HTTP_DONE && r.keep_alive, "HTTP/1.0 keep-alive");
    free(buf);
    rc = parse_all("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", &buf, &r);
    CHECK(rc == HTTP_NEED_MORE && http_head_done(&r) && r.expect_continue, "Expect: 100-continue seen before the body");
    free(buf);
}

static void test_http_errors(void) {
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET / HTTP/1.1\nHost: a\n\n", 400},                                     /* bare LF */
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},                   /* obs-fold */
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},                             /* space before colon */
        {"GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 400},                         /* control character */
        {"GET relative HTTP/1.1\r\n\r\n", 400},                                  /* not origin-form */
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTX/1.1\r\n\r\n", 400},
        {"GET /\r\n\r\n", 400},
        {"VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413},              /* over max_body 4096 */
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417},
        {"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n\r\n", 431},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n", 413},  /* 4097 > max_body */
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", 400}, /* bare LF after the size */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *buf;
        http_request r;
        int rc = parse_all(cases[i].req, &buf, &r);
        CHECK(rc == HTTP_ERROR && r.status == cases[i].status && r.error && r.error[0],
              "case %zu: rc %d status %d (%s), expected %d", i, rc, r.status, r.error ? r.error : "", cases[i].status);
        free(buf);
    }
    /* a head that never ends: 431 once it passes max_header_bytes */
    char big[1200];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    http_request r;
    http_parser_init(&r, &LIM);
    CHECK(http_parse(&r, big, 1000) == HTTP_NEED_MORE, "1000 bytes: need more");
    CHECK(http_parse(&r, big, sizeof big) == HTTP_ERROR && r.status == 431, "1200 bytes without an end: 431");
    /* a target of 2048 bytes or more: 414 */
    char *longt = malloc(2200);
    memcpy(longt, "GET /", 5);
    memset(longt + 5, 'b', 2100);
    memcpy(longt + 2105, " HTTP/1.1\r\n\r\n", 14);
    http_limits wide = {8192, 8, 4096};
    http_parser_init(&r, &wide);
    CHECK(http_parse(&r, longt, 2119) == HTTP_ERROR && r.status == 414, "long target: %d", r.status);
    free(longt);
}

/* The chunked body fed one byte per call gives the same body as fed at once. */
static void test_chunked_bytewise(void) {
    const char *req = "POST /v1/embeddings HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
                      "5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    size_t n = strlen(req), first_done = 0;
    char *buf = malloc(n);
    memcpy(buf, req, n);
    http_request r;
    http_parser_init(&r, &LIM);
    int rc = HTTP_NEED_MORE;
    for (size_t k = 1; k <= n && rc == HTTP_NEED_MORE; k++) {
        rc = http_parse(&r, buf, k);
        first_done = k;
    }
    const size_t end_of_first = n - strlen("GET / HTTP/1.1\r\n\r\n");
    CHECK(rc == HTTP_DONE && first_done == end_of_first, "done exactly at the end of the first request (%zu vs %zu)",
          first_done, end_of_first);
    CHECK(r.body_len == 11 && memcmp(buf + r.body_off, "hello world", 11) == 0, "decoded body '%.*s'",
          (int)r.body_len, buf + r.body_off);
    CHECK(r.consumed == end_of_first, "consumed %zu", r.consumed);
    /* the pipelined request after it is intact */
    http_request r2;
    http_parser_init(&r2, &LIM);
    CHECK(http_parse(&r2, buf + r.consumed, n - r.consumed) == HTTP_DONE && strcmp(r2.method, "GET") == 0, "next request");
    free(buf);
}

static void test_json_values(void) {
    char err[200];
    int too_many;
    const char *doc = " {\"s\": \"a\\u00e9\\ud83d\\ude00\\n\\\"\\/\", \"n\": [-0, 1e3, 1.5E-2, 12345678901234567890],"
                      " \"t\": true, \"f\": false, \"z\": null, \"e\": {}, \"a\": []} ";
    json_value *v = json_parse_limited(doc, strlen(doc), NULL, err, sizeof err, &too_many);
    CHECK(v != NULL, "parse: %s", err);
    if (!v) return;
    const json_value *s = json_get(v, "s"), *n = json_get(v, "n");
    CHECK(s && s->type == JSON_STRING && s->string_len == 10 && memcmp(s->string, "a\xc3\xa9\xf0\x9f\x98\x80\n\"/", 10) == 0,
          "escapes decoded to UTF-8");
    CHECK(n && n->type == JSON_ARRAY && n->n_items == 4, "number array");
    if (n && n->n_items == 4) {
        CHECK(n->items[0].number == 0 && n->items[1].number == 1000 && n->items[2].number == 0.015 &&
                  n->items[3].number == 12345678901234567890.0,
              "numbers %g %g %g %g", n->items[0].number, n->items[1].number, n->items[2].number, n->items[3].number);
    }
    CHECK(json_get(v, "t")->boolean == 1 && json_get(v, "f")->type == JSON_BOOL && json_get(v, "z")->type == JSON_NULL, "literals");
    CHECK(json_get(v, "e")->type == JSON_OBJECT && json_get(v, "a")->type == JSON_ARRAY && json_get(v, "missing") == NULL, "empty containers");
    json_free(v);

    static const char *bad[] = {"01", "1.", ".5", "+1", "1e", "NaN", "Infinity", "1e400", "[1,]", "{\"a\":1,}",
                                "{\"a\" 1}", "{a:1}", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
                                "\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"a\tb\"",
                                "{\"a\":1,\"a\":2}", "[1] 2", "", "  ", "tru", "nul", "[", "\"abc", "\"\\"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = json_parse_limited(bad[i], strlen(bad[i]), NULL, err, sizeof err, &too_many);
        CHECK(v == NULL && err[0] && !too_many, "'%s' must be refused as a syntax error", bad[i]);
        json_free(v);
    }
}

static void test_json_limits(void) {
    char err[200];
    int too_many;
    json_limits lim = {3, 10, 2};
    json_value *v = json_parse_limited("[[[1]]]", 7, &lim, err, sizeof err, &too_many);
    CHECK(v != NULL, "depth 3 accepted: %s", err);
    json_free(v);
    v = json_parse_limited("[[[[1]]]]", 9, &lim, err, sizeof err, &too_many);
    CHECK(!v && too_many, "depth 4 refused as too large");
    v = json_parse_limited("[1,2,3,4,5,6,7,8,9]", 19, &lim, err, sizeof err, &too_many);
    CHECK(v != NULL, "10 values accepted: %s", err);
    json_free(v);
    v = json_parse_limited("[1,2,3,4,5,6,7,8,9,10]", 22, &lim, err, sizeof err, &too_many);
    CHECK(!v && too_many, "11 values refused as too large");
    v = json_parse_limited("{\"a\":1,\"b\":2,\"c\":3}", 19, &lim, err, sizeof err, &too_many);
    CHECK(!v && too_many, "3 members refused as too large");
}

static api_config config(void) {
    api_config c = {.max_inputs = 4, .max_file_bytes = 1 << 20, .model_name = "tiny", .embedding_dim = 32};
    return c;
}

static bool parse_api(const char *body, api_request *req, api_error *e, const api_config *cfg) {
    return api_parse_embeddings(body, strlen(body), cfg, req, e);
}

/* "task" against the file's task adapters, "dimensions" against its Matryoshka dims (when it lists any) */
static void test_api_task_and_dims(void) {
    static const char *const tasks[] = {"retrieval", "code", NULL};
    static const int dims[] = {8, 16};
    api_config plain = config(), jina = config();
    jina.tasks = tasks;
    jina.matryoshka = dims;
    jina.n_matryoshka = 2;
    api_request req;
    api_error e;
    CHECK(parse_api("{\"input\":\"x\",\"task\":\"code\",\"dimensions\":16}", &req, &e, &jina), "%s", e.message);
    CHECK(req.task && strcmp(req.task, "code") == 0 && req.dimensions == 16, "task code, dimensions 16");
    api_request_free(&req);
    CHECK(parse_api("{\"input\":\"x\",\"dimensions\":32}", &req, &e, &jina), "the full width: %s", e.message);
    CHECK(!req.task && req.dimensions == 32, "no task: NULL (the file's default)");
    api_request_free(&req);
    CHECK(parse_api("{\"input\":\"x\",\"dimensions\":12}", &req, &e, &plain), "any dims without a list: %s", e.message);
    api_request_free(&req);
    static const struct {
        const char *body;
        bool jina;
        const char *param, *msg;
    } bad[] = {
        {"{\"input\":\"x\",\"task\":\"classification\"}", true, "task", "tasks: retrieval, code"},
        {"{\"input\":\"x\",\"task\":\"Code\"}", true, "task", "tasks: retrieval, code"},
        {"{\"input\":\"x\",\"task\":[\"code\"]}", true, "task", "tasks: retrieval, code"},
        {"{\"input\":\"x\",\"task\":\"code\"}", false, "task", "no task adapters"},
        {"{\"input\":\"x\",\"dimensions\":12}", true, "dimensions", "Matryoshka dims: 8, 16, 32"},
        {"{\"input\":\"x\",\"dimensions\":33}", true, "dimensions", "from 1 to 32"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        bool ok = parse_api(bad[k].body, &req, &e, bad[k].jina ? &jina : &plain);
        CHECK(!ok && e.status == 400 && e.param && strcmp(e.param, bad[k].param) == 0 && strstr(e.message, bad[k].msg),
              "%s: %d %s '%s'", bad[k].body, e.status, e.param, e.message);
        api_request_free(&req);
    }
}

/* "return_multivector": only a boolean; refused by a file without token vectors; required by one without
 * a single vector (the message says so); not with "dimensions". */
static void test_api_multi_vector(void) {
    api_config single = config(), both = config(), multi_only = config();
    single.preset = "abc";
    both.multi_vector_dim = 16;
    multi_only.embedding_dim = 0;
    multi_only.multi_vector_dim = 128;
    multi_only.preset = "colqwen2";
    api_request req;
    api_error e;
    CHECK(parse_api("{\"input\":\"x\",\"return_multivector\":true}", &req, &e, &both) && req.multi_vector, "%s",
          e.message);
    api_request_free(&req);
    CHECK(parse_api("{\"input\":\"x\",\"return_multivector\":false}", &req, &e, &both) && !req.multi_vector, "%s",
          e.message);
    api_request_free(&req);
    CHECK(parse_api("{\"input\":\"x\",\"return_multivector\":true,\"encoding_format\":\"base64\"}", &req, &e,
                    &multi_only) && req.multi_vector && req.base64, "%s", e.message);
    api_request_free(&req);
    const struct {
        const char *body;
        const api_config *cfg;
        const char *param, *msg;
    } bad[] = {
        {"{\"input\":\"x\",\"return_multivector\":true}", &single, "return_multivector", "preset abc) has no multi-vector"},
        {"{\"input\":\"x\",\"return_multivector\":1}", &both, "return_multivector", "true or false"},
        {"{\"input\":\"x\",\"return_multivector\":\"true\"}", &both, "return_multivector", "true or false"},
        {"{\"input\":\"x\"}", &multi_only, "return_multivector", "send \"return_multivector\": true for its [T, 128]"},
        {"{\"input\":\"x\",\"return_multivector\":false}", &multi_only, "return_multivector", "one vector per token"},
        {"{\"input\":\"x\",\"return_multivector\":true,\"dimensions\":8}", &both, "dimensions", "single embedding"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        bool ok = parse_api(bad[k].body, &req, &e, bad[k].cfg);
        CHECK(!ok && e.status == 400 && e.param && strcmp(e.param, bad[k].param) == 0 && strstr(e.message, bad[k].msg),
              "%s: %d %s '%s'", bad[k].body, e.status, e.param, e.message);
        api_request_free(&req);
    }
}


static void test_api_input(void) {
    api_config cfg = config();
    api_request req;
    api_error e;
    CHECK(parse_api("{\"model\":\"tiny\",\"input\":\"hello\"}", &req, &e, &cfg), "%s", e.message);
    CHECK(req.n_items == 1 && strcmp(req.items[0].text, "hello") == 0 && !req.items[0].image, "one text");
    CHECK(!req.base64 && req.dimensions == 0 && req.role == ABC_ROLE_AUTO && !req.chat, "defaults");
    api_request_free(&req);
    CHECK(parse_api("{\"input\":[\"a\",\"b\",\"c\"],\"encoding_format\":\"base64\",\"dimensions\":8,\"abc_role\":\"candidate\"}",
                    &req, &e, &cfg), "%s", e.message);
    CHECK(req.n_items == 3 && strcmp(req.items[2].text, "c") == 0 && req.base64 && req.dimensions == 8 &&
              req.role == ABC_ROLE_CANDIDATE, "list and options");
    api_request_free(&req);

    static const struct {
        const char *body;
        int status;
        const char *param;
    } bad[] = {
        {"{\"model\":\"other\",\"input\":\"x\"}", 404, "model"},
        {"{\"input\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "input"}, /* over max_inputs 4 */
        {"{\"input\":[]}", 400, "input"},
        {"{\"input\":\"\"}", 400, "input"},
        {"{\"input\":[[1,2]]}", 400, "input"},
        {"{\"input\":\"a\\u0000b\"}", 400, "input"},
        {"{\"input\":\"x\",\"dimensions\":33}", 400, "dimensions"},
        {"{\"input\":\"x\",\"dimensions\":1.5}", 400, "dimensions"},
        {"{\"input\":\"x\",\"dimensions\":-1e300}", 400, "dimensions"},
        {"{\"input\":\"x\",\"encoding_format\":\"int8\"}", 400, "encoding_format"},
        {"{\"input\":\"x\",\"abc_role\":\"both\"}", 400, "abc_role"},
        {"{}", 400, "input"},
        {"[]", 400, NULL},
        {"{\"input\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"y\"}]}", 400, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool ok = parse_api(bad[i].body, &req, &e, &cfg);
        CHECK(!ok && e.status == bad[i].status && e.message[0] &&
                  (bad[i].param ? e.param && strcmp(e.param, bad[i].param) == 0 : e.param == NULL),
              "case %zu (%s): status %d param %s: %s", i, bad[i].body, e.status, e.param ? e.param : "null", e.message);
        CHECK(req.items == NULL && req.doc == NULL, "case %zu: nothing left allocated", i);
        api_request_free(&req);
    }
}

static void test_api_messages(void) {
    api_config cfg = config();
    api_request req;
    api_error e;
    /* "iVBORw0KGgo=" is the 8-byte PNG signature */
    const char *body = "{\"input\":\"\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":["
                       "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},"
                       "{\"type\":\"text\",\"text\":\"what?\"}]}]}";
    CHECK(parse_api(body, &req, &e, &cfg), "%s", e.message);
    CHECK(req.chat && req.n_items == 1, "one conversation, one input");
    if (req.n_items == 1) {
        CHECK(req.items[0].image_size == 8 && memcmp(req.items[0].image, "\x89PNG\r\n\x1a\n", 8) == 0, "image bytes");
        CHECK(req.items[0].text && strcmp(req.items[0].text, "sys\nwhat?") == 0, "texts joined by a newline: '%s'",
              req.items[0].text ? req.items[0].text : "(null)");
    }
    api_request_free(&req);
    CHECK(parse_api("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"data:;base64,AAAA\"}]}]}",
                    &req, &e, &cfg), "string image_url, no media type: %s", e.message);
    CHECK(req.n_items == 1 && req.items[0].text == NULL && req.items[0].image_size == 3, "image only");
    api_request_free(&req);

    static const struct {
        const char *url;
        int status;
        const char *msg;
    } bad[] = {
        {"https://example.com/a.png", 400, "not fetched"},
        {"http://127.0.0.1/a.png", 400, "not fetched"},
        {"ftp://x", 400, "scheme"},
        {"file:///images/cat.png", 400, "disabled"},
        {"data:image/png,rawbytes", 400, "base64"},
        {"data:text/plain;base64,AAAA", 400, "media type"},
        {"data:image/png;base64,", 400, "empty"},
        {"data:image/png;base64,AA!A", 400, "base64"},
        {"data:image/png;base64", 400, "no ','"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char b[512];
        snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}}]}]}",
                 bad[i].url);
        bool ok = parse_api(b, &req, &e, &cfg);
        CHECK(!ok && e.status == bad[i].status && strstr(e.message, bad[i].msg), "%s: %d %s", bad[i].url, e.status, e.message);
        api_request_free(&req);
    }
    static const char *bad_msgs[] = {
        "{\"messages\":[]}",
        "{\"messages\":[{\"content\":\"x\"}]}",
        "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"audio\"}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}",
        ("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"data:;base64,AAAA\"},"
         "{\"type\":\"image_url\",\"image_url\":\"data:;base64,AAAA\"}]}]}"),
    };
    for (size_t i = 0; i < sizeof bad_msgs / sizeof *bad_msgs; i++) {
        bool ok = parse_api(bad_msgs[i], &req, &e, &cfg);
        CHECK(!ok && e.status == 400 && e.message[0], "%s: %d %s", bad_msgs[i], e.status, e.message);
        api_request_free(&req);
    }
}

static void test_api_file_urls(void) {
    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/abc_test_serve_parse.XXXXXX", tmp && *tmp && strlen(tmp) < 200 ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char allowed[300], outside[300], path[400], real[PATH_MAX];
    snprintf(allowed, sizeof allowed, "%s/allowed", dir);
    snprintf(outside, sizeof outside, "%s/outside.bin", dir);
    mkdir(allowed, 0700);
    snprintf(path, sizeof path, "%s/img.bin", allowed);
    FILE *f = fopen(path, "wb");
    fputs("IMAGEBYTES", f);
    fclose(f);
    f = fopen(outside, "wb");
    fputs("SECRET", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/link.bin", allowed);
    CHECK(symlink(outside, path) == 0, "symlink");
    CHECK(realpath(allowed, real) != NULL, "realpath");
    api_config cfg = config();
    cfg.allow_dir = real;
    static const struct {
        const char *rel;
        int status;
    } cases[] = {
        {"allowed/img.bin", 0},
        {"allowed/./img.bin", 0},
        {"allowed/%69mg.bin", 0}, /* percent-decoded */
        {"allowed/../outside.bin", 403},
        {"allowed/%2E%2E/outside.bin", 403},
        {"allowed/link.bin", 403},
        {"outside.bin", 403},
        {"allowed/missing.bin", 400},
        {"allowed/img.bin%00", 400},
        {"allowed", 403}, /* the directory itself is not inside it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char b[1024];
        snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"file://%s/%s\"}}]}]}",
                 dir, cases[i].rel);
        api_request req;
        api_error e;
        bool ok = parse_api(b, &req, &e, &cfg);
        if (cases[i].status == 0)
            CHECK(ok && req.items[0].image_size == 10 && memcmp(req.items[0].image, "IMAGEBYTES", 10) == 0, "%s: %s",
                  cases[i].rel, e.message);
        else
            CHECK(!ok && e.status == cases[i].status, "%s: status %d, expected %d (%s)", cases[i].rel, e.status,
                  cases[i].status, e.message);
        api_request_free(&req);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/img.bin", allowed);
    unlink(path);
    unlink(outside);
    rmdir(allowed);
    rmdir(dir);
}

int main(void) {
    RUN_TEST(test_base64_rfc4648);
    RUN_TEST(test_ct_equal);
    RUN_TEST(test_http_request_fields);
    RUN_TEST(test_http_errors);
    RUN_TEST(test_chunked_bytewise);
    RUN_TEST(test_json_values);
    RUN_TEST(test_json_limits);
    RUN_TEST(test_api_input);
    RUN_TEST(test_api_messages);
    RUN_TEST(test_api_task_and_dims);
    RUN_TEST(test_api_multi_vector);
    RUN_TEST(test_api_file_urls);
    return test_summary();
}
