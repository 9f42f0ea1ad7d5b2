/* tool_http_load.c — the HTTP client side of tests/test_serve.sh (loopback only):
 *
 *   tool_http_load load PORT BODY.json N CONNS [MAX_SECONDS] [API_KEY]
 *       N POST /v1/embeddings requests of BODY over CONNS keep-alive connections in parallel; every
 *       response must be 200 and byte-identical to the first. Prints one line:
 *       "requests N ok N errors N reconnects N p50_ms X p99_ms X max_ms X rps X seconds X".
 *   tool_http_load raw PORT [--slow-ms MS] [--half-close] [--wait S] < REQUEST
 *       sends the bytes of stdin as they are (with --slow-ms one byte every MS ms, stopping early when
 *       the server answers or closes), optionally half-closes, and prints what the server sends back
 *       until it closes or S seconds (default 10) pass.
 *   tool_http_load bomb-png OUT W H
 *       writes a valid 8-bit grey PNG of W×H zero pixels, deflate-compressed (≈1/160 of the pixels),
 *       the shape of a decompression bomb.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- load ---- */

typedef struct {
    int port;
    char *request;
    size_t request_len;
    long total;
    double max_seconds, t_end;
    atomic_long next, ok, errors, reconnects;
    double *lat;           /* one slot per request */
    pthread_mutex_t mu;
    char *first_body;      /* the reference response body */
    size_t first_len;
} load_state;

/* Reads one response: status and body (Content-Length framing). -1 on a broken connection. */
static int read_response(int fd, char **buf, size_t *cap, int *status, char **body, size_t *body_len, double deadline) {
    size_t len = 0;
    for (;;) {
        if (len + 1 >= *cap) {
            *cap *= 2;
            char *nb = realloc(*buf, *cap);
            if (!nb) return -1;
            *buf = nb;
        }
        (*buf)[len] = 0;
        char *end = strstr(*buf, "\r\n\r\n");
        if (end) {
            size_t head = (size_t)(end - *buf) + 4;
            char *cl = strstr(*buf, "Content-Length: ");
            if (!cl || cl > end || sscanf(*buf, "HTTP/1.1 %d", status) != 1) return -1;
            size_t n = strtoul(cl + 16, NULL, 10);
            if (len >= head + n) {
                *body = *buf + head;
                *body_len = n;
                return 0;
            }
            if (head + n + 1 > *cap) {
                *cap = head + n + 1;
                char *nb = realloc(*buf, *cap);
                if (!nb) return -1;
                *buf = nb;
                continue;
            }
        }
        double left = deadline - now_s();
        if (left <= 0) return -1;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) return -1;
        ssize_t r = recv(fd, *buf + len, *cap - len - 1, 0);
        if (r <= 0) return -1;
        len += (size_t)r;
    }
}

static void *load_thread(void *arg) {
    load_state *st = arg;
    size_t cap = 65536;
    char *buf = malloc(cap);
    int fd = -1;
    for (;;) {
        long i = atomic_fetch_add(&st->next, 1);
        if (i >= st->total || now_s() > st->t_end) break;
        if (fd < 0) {
            fd = connect_port(st->port);
            if (fd < 0) {
                atomic_fetch_add(&st->errors, 1);
                continue;
            }
        }
        double t0 = now_s();
        int status = 0;
        char *body = NULL;
        size_t body_len = 0;
        if (send_all(fd, st->request, st->request_len) != 0 ||
            read_response(fd, &buf, &cap, &status, &body, &body_len, t0 + 60) != 0) {
            atomic_fetch_add(&st->errors, 1);
            atomic_fetch_add(&st->reconnects, 1);
            close(fd);
            fd = -1;
            continue;
        }
        st->lat[i] = (now_s() - t0) * 1000;
        int same = 1;
        pthread_mutex_lock(&st->mu);
        if (!st->first_body) {
            st->first_body = malloc(body_len + 1);
            if (st->first_body) memcpy(st->first_body, body, body_len);
            st->first_len = body_len;
        } else {
            same = body_len == st->first_len && memcmp(body, st->first_body, body_len) == 0;
        }
        pthread_mutex_unlock(&st->mu);
        if (status == 200 && same) atomic_fetch_add(&st->ok, 1);
        else {
            atomic_fetch_add(&st->errors, 1);
            fprintf(stderr, "request %ld: status %d%s: %.200s\n", i, status, same ? "" : " (body differs)", body);
        }
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_load(int argc, char **argv) {
    if (argc < 6) return 2;
    load_state st;
    memset(&st, 0, sizeof st);
    st.port = atoi(argv[2]);
    st.total = atol(argv[4]);
    int conns = atoi(argv[5]);
    st.max_seconds = argc > 6 ? atof(argv[6]) : 300;
    const char *key = argc > 7 ? argv[7] : NULL;
    FILE *f = fopen(argv[3], "rb");
    if (!f || st.total <= 0 || conns <= 0) {
        fprintf(stderr, "load: bad arguments\n");
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long blen = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc((size_t)blen + 1);
    if (!body || fread(body, 1, (size_t)blen, f) != (size_t)blen) return 2;
    fclose(f);
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "%s%s%sContent-Length: %ld\r\n\r\n",
                      key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "", blen);
    st.request_len = (size_t)hn + (size_t)blen;
    st.request = malloc(st.request_len);
    memcpy(st.request, head, (size_t)hn);
    memcpy(st.request + hn, body, (size_t)blen);
    free(body);
    st.lat = calloc((size_t)st.total, sizeof *st.lat);
    for (long i = 0; i < st.total; i++) st.lat[i] = -1;
    pthread_mutex_init(&st.mu, NULL);
    double t0 = now_s();
    st.t_end = t0 + st.max_seconds;
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    for (int c = 0; c < conns; c++) pthread_create(&th[c], NULL, load_thread, &st);
    for (int c = 0; c < conns; c++) pthread_join(th[c], NULL);
    double secs = now_s() - t0;
    size_t n = 0;
    for (long i = 0; i < st.total; i++)
        if (st.lat[i] >= 0) st.lat[n++] = st.lat[i];
    qsort(st.lat, n, sizeof *st.lat, cmp_double);
    double p50 = n ? st.lat[(n - 1) / 2] : 0, p99 = n ? st.lat[(size_t)((n - 1) * 0.99)] : 0, mx = n ? st.lat[n - 1] : 0;
    printf("requests %ld ok %ld errors %ld reconnects %ld p50_ms %.3f p99_ms %.3f max_ms %.3f rps %.1f seconds %.2f\n",
           st.total, atomic_load(&st.ok), atomic_load(&st.errors), atomic_load(&st.reconnects), p50, p99, mx,
           secs > 0 ? (double)atomic_load(&st.ok) / secs : 0, secs);
    free(st.lat);
    free(st.request);
    free(st.first_body);
    free(th);
    return atomic_load(&st.ok) == st.total ? 0 : 1;
}

/* ---- raw ---- */

static int cmd_raw(int argc, char **argv) {
    if (argc < 3) return 2;
    int port = atoi(argv[2]), slow_ms = 0, half_close = 0;
    double wait_s = 10;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--slow-ms") && i + 1 < argc) slow_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--half-close")) half_close = 1;
        else if (!strcmp(argv[i], "--wait") && i + 1 < argc) wait_s = atof(argv[++i]);
        else return 2;
    }
    size_t cap = 1 << 16, len = 0;
    char *req = malloc(cap);
    for (;;) {
        if (len == cap) req = realloc(req, cap *= 2);
        size_t r = fread(req + len, 1, cap - len, stdin);
        if (r == 0) break;
        len += r;
    }
    int fd = connect_port(port);
    if (fd < 0) {
        printf("CONNECT FAILED\n");
        return 1;
    }
    double sent_for = 0, t0 = now_s();
    if (slow_ms > 0) {
        for (size_t i = 0; i < len; i++) {
            if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) break;
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, slow_ms) > 0) break; /* the server answered (or closed) */
        }
    } else {
        send_all(fd, req, len);
    }
    sent_for = now_s() - t0;
    if (half_close) shutdown(fd, SHUT_WR);
    char buf[65536];
    double end = now_s() + wait_s;
    size_t total = 0;
    for (;;) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) break;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        fwrite(buf, 1, (size_t)r, stdout);
        total += (size_t)r;
    }
    fprintf(stderr, "raw: sent for %.2f s, received %zu bytes, done after %.2f s\n", sent_for, total, now_s() - t0);
    close(fd);
    free(req);
    return 0;
}

/* ---- bomb-png ---- */

static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t c, const uint8_t *p, size_t n) {
    if (!crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++) v = v & 1 ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            crc_table[i] = v;
        }
    c = ~c;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
    uint32_t acc;
    int bits;
} bitw;

static void put_byte(bitw *w, uint8_t b) {
    if (w->n == w->cap) w->p = realloc(w->p, w->cap = w->cap ? w->cap * 2 : 1024);
    w->p[w->n++] = b;
}

static void put_bits(bitw *w, uint32_t v, int n) { /* LSB first, as deflate packs fields */
    for (int i = 0; i < n; i++) {
        w->acc |= ((v >> i) & 1u) << w->bits;
        if (++w->bits == 8) {
            put_byte(w, (uint8_t)w->acc);
            w->acc = 0;
            w->bits = 0;
        }
    }
}

static void put_code(bitw *w, uint32_t code, int n) { /* Huffman codes go most significant bit first */
    for (int i = n - 1; i >= 0; i--) put_bits(w, (code >> i) & 1u, 1);
}

static void put_be32(bitw *w, uint32_t v) {
    for (int i = 3; i >= 0; i--) put_byte(w, (uint8_t)(v >> (8 * i)));
}

static void chunk(FILE *f, const char *type, const uint8_t *data, size_t n) {
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    fwrite(len, 1, 4, f);
    fwrite(type, 1, 4, f);
    if (n) fwrite(data, 1, n, f);
    uint32_t c = crc32_update(0, (const uint8_t *)type, 4);
    c = crc32_update(c, data, n);
    uint8_t cb[4] = {(uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
    fwrite(cb, 1, 4, f);
}

static int cmd_bomb(int argc, char **argv) {
    if (argc < 5) return 2;
    uint32_t W = (uint32_t)atol(argv[3]), H = (uint32_t)atol(argv[4]);
    uint64_t raw = (uint64_t)H * (W + 1); /* a filter byte (0) per row, then W zero pixels: all zeros */
    bitw w = {0};
    put_byte(&w, 0x78);
    put_byte(&w, 0x01);
    put_bits(&w, 1, 1); /* BFINAL */
    put_bits(&w, 1, 2); /* fixed Huffman */
    put_code(&w, 0x30, 8); /* literal 0 */
    uint64_t left = raw - 1;
    while (left >= 258) {
        put_code(&w, 0xC5, 8); /* length 258 (code 285) */
        put_code(&w, 0, 5);    /* distance 1 */
        left -= 258;
    }
    while (left--) put_code(&w, 0x30, 8);
    put_code(&w, 0, 7); /* end of block */
    if (w.bits) put_bits(&w, 0, 8 - w.bits);
    uint32_t adler = (uint32_t)((raw % 65521) << 16 | 1); /* all-zero data: a = 1, b = n */
    put_be32(&w, adler);
    FILE *f = fopen(argv[2], "wb");
    if (!f) return 1;
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    uint8_t ihdr[13] = {(uint8_t)(W >> 24), (uint8_t)(W >> 16), (uint8_t)(W >> 8), (uint8_t)W,
                        (uint8_t)(H >> 24), (uint8_t)(H >> 16), (uint8_t)(H >> 8), (uint8_t)H, 8, 0, 0, 0, 0};
    chunk(f, "IHDR", ihdr, 13);
    chunk(f, "IDAT", w.p, w.n);
    chunk(f, "IEND", NULL, 0);
    int rc = fclose(f) == 0 ? 0 : 1;
    free(w.p);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "load")) return cmd_load(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "raw")) return cmd_raw(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "bomb-png")) return cmd_bomb(argc, argv);
    fprintf(stderr, "usage: tool_http_load load|raw|bomb-png ... (see the comment at the top)\n");
    return 2;
}
