/* Fuzz target: what `abc serve` does with untrusted bytes before any model runs: the HTTP/1.1 request
 * parser (cli/serve_http.c), the JSON body reader (model_convert/json.c) and the /v1/embeddings decoding
 * (cli/serve_api.c: input/messages, data: URLs, base64).
 *
 * Input: byte 0 picks how the request is fed (0: all at once; n: n bytes more per call, as a client sending
 * in pieces would), the rest is the raw request. Checked beyond "no sanitizer report":
 *  - feeding in pieces gives the same outcome as feeding at once (status, body, consumed bytes);
 *  - a complete request's body decodes without crashing and every input it yields is consistent;
 *  - base64 round trips, and a decoded string re-encodes to itself.
 *
 * Builds: with clang's libFuzzer (-fsanitize=fuzzer), or standalone with -DFUZZ_HTTP_STANDALONE_MAIN, where
 * main() below runs the corpus and then random mutations of it for a time or run budget under ASan/UBSan
 * (no coverage feedback: a blunt fuzzer and a regression runner). tests/test_fuzz_http.sh runs both. */
#define _XOPEN_SOURCE 700
#include "cli/serve_api.c"
#include "cli/serve_http.c"
#include "model_convert/json.c"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FUZZ_CHECK(cond, what)                                                  \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_http_request: check failed: %s (%s:%d)\n",  \
                    what, __FILE__, __LINE__);                                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

static const http_limits fuzz_limits = {2048, 32, 1 << 16};

static void check_json(const json_value *v, int depth, const json_limits *lim) {
    FUZZ_CHECK(depth <= lim->max_depth, "nesting beyond max_depth");
    if (v->type == JSON_STRING) {
        FUZZ_CHECK(v->string && v->string[v->string_len] == 0, "string not terminated");
        FUZZ_CHECK(json_utf8_valid(v->string, v->string_len), "string not valid UTF-8");
    }
    if (v->type == JSON_OBJECT) FUZZ_CHECK(v->n_items <= lim->max_members, "object beyond max_members");
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->n_items; i++) check_json(&v->items[i], depth + 1, lim);
}

static void check_body(const char *body, size_t n) {
    json_limits lim = {8, 512, 16};
    char err[200];
    int too_many = 0;
    json_value *v = json_parse_limited(body, n, &lim, err, sizeof err, &too_many);
    if (v) check_json(v, 1, &lim);
    else FUZZ_CHECK(err[0], "JSON refused without a message");
    json_free(v);

    api_config cfg = {.max_inputs = 8, .max_file_bytes = 1 << 16, .model_name = "m", .embedding_dim = 16,
                      .multi_vector_dim = 4, .preset = "p"};
    api_request req;
    api_error e;
    if (api_parse_embeddings(body, n, &cfg, &req, &e)) {
        FUZZ_CHECK(req.n_items >= 1 && req.n_items <= cfg.max_inputs, "input count");
        for (size_t i = 0; i < req.n_items; i++) {
            const api_item *it = &req.items[i];
            FUZZ_CHECK(it->text || it->image, "an input with neither text nor image");
            if (it->text) FUZZ_CHECK(json_utf8_valid(it->text, strlen(it->text)), "input text not UTF-8");
            if (it->image) FUZZ_CHECK(it->image_size > 0, "empty image");
        }
        FUZZ_CHECK(req.dimensions >= 0 && req.dimensions <= cfg.embedding_dim, "dimensions");
        FUZZ_CHECK(!req.multi_vector || req.dimensions == 0, "dimensions with return_multivector");
    } else {
        FUZZ_CHECK(e.status >= 400 && e.status < 600 && e.message[0] && e.type, "refusal without status or message");
    }
    api_request_free(&req);

    /* base64: encoding round trips; a string that decodes re-encodes to itself (up to the optional padding) */
    char *enc = malloc((n + 2) / 3 * 4 + 1);
    uint8_t *dec = malloc(base64_decoded_max((n + 2) / 3 * 4) + n + 4);
    if (enc && dec) {
        size_t el = base64_encode((const uint8_t *)body, n, enc);
        size_t dl = base64_decode(enc, el, dec);
        FUZZ_CHECK(dl == n && memcmp(dec, body, n) == 0, "base64 round trip");
        dl = base64_decode(body, n, dec);
        if (dl != (size_t)-1 && dl <= n) {
            char *again = malloc((dl + 2) / 3 * 4 + 1);
            if (again) {
                size_t al = base64_encode(dec, dl, again), bl = n;
                while (al > 0 && again[al - 1] == '=') al--;
                while (bl > 0 && body[bl - 1] == '=') bl--;
                FUZZ_CHECK(al == bl && memcmp(again, body, al) == 0, "base64 decode/encode not canonical");
                free(again);
            }
        }
    }
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = data[0];
    data++, size--;
    char *a = malloc(size + 1), *b = malloc(size + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memcpy(a, data, size);
    memcpy(b, data, size);
    http_request ra, rb;
    http_parser_init(&ra, &fuzz_limits);
    int rc_a = http_parse(&ra, a, size);
    http_parser_init(&rb, &fuzz_limits);
    int rc_b = HTTP_NEED_MORE;
    size_t fed = step ? 0 : size;
    if (!step) rc_b = http_parse(&rb, b, size);
    while (step && rc_b == HTTP_NEED_MORE && fed < size) {
        fed = size - fed < step ? size : fed + step;
        rc_b = http_parse(&rb, b, fed);
    }
    if (rc_b == HTTP_DONE) FUZZ_CHECK(rc_a == HTTP_DONE, "pieces: done, at once: not");
    if (fed == size) FUZZ_CHECK(rc_a == rc_b, "outcome differs when fed in pieces");
    if (rc_a == HTTP_ERROR && rc_b == HTTP_ERROR) FUZZ_CHECK(ra.status == rb.status, "error status differs in pieces");
    if (rc_a == HTTP_ERROR) FUZZ_CHECK(ra.error && ra.status >= 400, "error without status or message");
    if (rc_a == HTTP_DONE) {
        FUZZ_CHECK(ra.consumed <= size && ra.body_off + ra.body_len <= ra.consumed, "body outside the request");
        FUZZ_CHECK(ra.body_len <= fuzz_limits.max_body && ra.head_len <= fuzz_limits.max_header_bytes, "limits");
        FUZZ_CHECK(ra.path[0] == '/' && ra.method[0], "method or path missing");
        if (rc_b == HTTP_DONE)
            FUZZ_CHECK(ra.consumed == rb.consumed && ra.body_len == rb.body_len &&
                           memcmp(a + ra.body_off, b + rb.body_off, ra.body_len) == 0 && strcmp(ra.path, rb.path) == 0,
                       "request differs when fed in pieces");
        check_body(a + ra.body_off, ra.body_len);
    }
    free(a);
    free(b);
    return 0;
}

#ifdef FUZZ_HTTP_STANDALONE_MAIN
/* ---- the standalone mutation driver ---- */

typedef struct {
    uint8_t *data;
    size_t size;
} blob;

static blob *corpus;
static size_t n_corpus, cap_corpus;
static const uint8_t *current;
static size_t current_size;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_rand(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static void add_blob(const uint8_t *d, size_t n) {
    if (n_corpus == cap_corpus) {
        cap_corpus = cap_corpus ? cap_corpus * 2 : 64;
        corpus = realloc(corpus, cap_corpus * sizeof *corpus);
        if (!corpus) exit(2);
    }
    corpus[n_corpus].data = malloc(n ? n : 1);
    if (!corpus[n_corpus].data) exit(2);
    memcpy(corpus[n_corpus].data, d, n);
    corpus[n_corpus++].size = n;
}

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    uint8_t buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    add_blob(buf, n);
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        add_file(p);
    }
    closedir(d);
}

static const char *const words[] = {
    "\r\n", "\r\n\r\n", "\n", " ", ":", "POST /v1/embeddings HTTP/1.1\r\n", "GET /health HTTP/1.1\r\n",
    "Content-Length: ", "Transfer-Encoding: chunked\r\n", "Connection: close\r\n", "Expect: 100-continue\r\n",
    "Authorization: Bearer k\r\n", "0\r\n\r\n", "ffffffff", "18446744073709551616", "-1", "0", "1", "\t",
    "{", "}", "[", "]", "\"", ",", "\\u", "\\ud800", "\\udc00", "\\\"", "\xc3\xa9", "\xff", "\xed\xa0\x80",
    "\"input\":", "\"messages\":", "\"role\":\"user\"", "\"content\":", "\"type\":\"image_url\"", "\"type\":\"text\"",
    "\"image_url\":{\"url\":\"", "data:image/png;base64,", "data:;base64,", "file:///", "https://",
    "\"encoding_format\":\"base64\"", "\"dimensions\":", "\"abc_role\":\"query\"", "\"model\":\"m\"", "null", "true",
    "1e999", "==", "=", "AAAA", "iVBORw0KGgo=",
};

static size_t mutate(uint8_t *buf, size_t n, size_t cap) {
    int rounds = 1 + (int)(next_rand() % 4);
    for (int r = 0; r < rounds; r++) {
        size_t pos = n ? next_rand() % (n + 1) : 0;
        switch (next_rand() % 9) {
        case 0: if (n) buf[pos % n] ^= (uint8_t)(1u << (next_rand() % 8)); break;
        case 1: if (n) buf[pos % n] = (uint8_t)next_rand(); break;
        case 2: /* insert a byte */
            if (n < cap) {
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = (uint8_t)next_rand();
                n++;
            }
            break;
        case 3: { /* delete a range */
            if (!n) break;
            size_t at = pos % n, len = 1 + next_rand() % (n - at < 16 ? n - at : 16);
            memmove(buf + at, buf + at + len, n - at - len);
            n -= len;
            break;
        }
        case 4: { /* duplicate a range */
            if (!n) break;
            size_t at = pos % n, len = 1 + next_rand() % (n - at < 64 ? n - at : 64);
            if (n + len > cap) break;
            memmove(buf + at + len, buf + at, n - at);
            n += len;
            break;
        }
        case 5:
        case 6: { /* insert a word */
            const char *w = words[next_rand() % (sizeof words / sizeof *words)];
            size_t len = strlen(w);
            if (n + len > cap) break;
            memmove(buf + pos + len, buf + pos, n - pos);
            memcpy(buf + pos, w, len);
            n += len;
            break;
        }
        case 7: { /* splice: the tail of another corpus entry */
            const blob *o = &corpus[next_rand() % n_corpus];
            if (!o->size) break;
            size_t from = next_rand() % o->size, len = o->size - from;
            if (pos + len > cap) len = cap - pos;
            memcpy(buf + pos, o->data + from, len);
            n = pos + len;
            break;
        }
        default: /* the feeding step (byte 0) */
            if (n) buf[0] = (uint8_t)(next_rand() % 4 == 0 ? 0 : next_rand() % 64);
            break;
        }
    }
    return n;
}

static void on_death(void) {
    char name[64];
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < current_size; i++) h = (h ^ current[i]) * 1099511628211ull;
    snprintf(name, sizeof name, "crash-%016llx", (unsigned long long)h);
    FILE *f = fopen(name, "wb");
    if (f) {
        fwrite(current, 1, current_size, f);
        fclose(f);
        fprintf(stderr, "fuzz_http_request: input written to %s\n", name);
    }
}

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define HAVE_DEATH_CALLBACK 1
#endif
#endif

static void abort_handler(int sig) {
    (void)sig;
    on_death();
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* usage: fuzz_http_request [-seconds=S] [-runs=N] [-seed=N] CORPUS_DIR_OR_FILE...
 * Runs every corpus input once, then mutations until S seconds or N runs; a crashing input is written to
 * ./crash-<hash>. Prints "fuzz_http_request: <N> executions in <S> s (<E>/s), corpus <C>, findings 0". */
int main(int argc, char **argv) {
    double seconds = 10;
    unsigned long long runs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "-seconds=", 9)) seconds = atof(argv[i] + 9);
        else if (!strncmp(argv[i], "-runs=", 6)) runs = strtoull(argv[i] + 6, NULL, 10);
        else if (!strncmp(argv[i], "-seed=", 6)) rng = strtoull(argv[i] + 6, NULL, 10) | 1;
        else add_path(argv[i]);
    }
#ifdef HAVE_DEATH_CALLBACK
    __sanitizer_set_death_callback(on_death);
#endif
    signal(SIGABRT, abort_handler);
    if (n_corpus == 0) add_blob((const uint8_t *)"\0GET / HTTP/1.1\r\n\r\n", 20);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long execs = 0;
    for (size_t i = 0; i < n_corpus; i++) {
        current = corpus[i].data;
        current_size = corpus[i].size;
        LLVMFuzzerTestOneInput(current, current_size);
        execs++;
    }
    enum { CAP = 1 << 17 };
    static uint8_t buf[CAP];
    double elapsed = 0;
    for (;;) {
        if (runs && execs >= runs) break;
        if ((execs & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            elapsed = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9;
            if (!runs && elapsed >= seconds) break;
        }
        const blob *b = &corpus[next_rand() % n_corpus];
        size_t n = b->size < CAP ? b->size : CAP;
        memcpy(buf, b->data, n);
        n = mutate(buf, n, CAP);
        current = buf;
        current_size = n;
        LLVMFuzzerTestOneInput(buf, n);
        execs++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    elapsed = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("fuzz_http_request: %llu executions in %.1f s (%.0f/s), corpus %zu, findings 0\n", execs, elapsed,
           elapsed > 0 ? (double)execs / elapsed : 0.0, n_corpus);
    for (size_t i = 0; i < n_corpus; i++) free(corpus[i].data);
    free(corpus);
    return 0;
}
#endif
