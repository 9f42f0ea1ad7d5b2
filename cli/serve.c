/* serve.c — `abc serve`: an HTTP/1.1 server for the OpenAI/vLLM embeddings API over the abc library
 * (README "Serving"). POSIX sockets and pthreads only; the library itself never sees a socket.
 *
 * Threads: one accept loop (the main thread); connection threads, one per open connection and reused
 * for the next (at most --max-connections; each reads and parses its request under the --timeout
 * deadline, so a slow client only ever holds its own connection thread); W workers each owning one
 * abc_context over the shared abc_model and taking jobs from one FIFO queue (at most --queue waiting,
 * 503 beyond); and one thread waiting for SIGINT/SIGTERM. */
#define _XOPEN_SOURCE 700
#include "abc.h"
#include "serve_api.h"
#include "serve_http.h"
#include "../model_convert/json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

int cmd_serve(int argc, char **argv);

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *model_path, *host, *api_key, *allow_dir, *model_name;
    int port, workers, threads, num_crops;
    size_t max_body, max_header_bytes, max_headers, max_inputs, queue_max, max_conns, max_pixels;
    size_t max_multi_floats;   /* most token-vector floats in one response (return_multivector) */
    double timeout_s;
    bool quiet;
} serve_options;

typedef struct job {
    const api_request *req;
    float *out;            /* n_items · dim; return_multivector: Σ n_vectors · multi dim, the worker's malloc */
    size_t *n_vectors;     /* return_multivector: T of each input */
    long tokens;
    int status;            /* 0 ok, else HTTP status */
    api_error err;
    bool done;
    pthread_cond_t cond;
    struct job *next;
} job;

typedef struct server server;

typedef struct {
    server *srv;
    abc_context *ctx;
    long last_tokens;      /* input_ids length of the last abc_embed (stage callback) */
    pthread_t thread;
} worker;

struct server {
    serve_options o;
    abc_model *model;
    int dim;
    char model_name[256];
    char allow_real[PATH_MAX];
    api_config api;
    http_limits lim;
    int listen_fd;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t work_cond, conns_cond, conn_work;
    job *head, *tail;
    size_t queued;
    bool workers_exit;
    size_t active_conns;          /* accepted and not yet closed (waiting or being served) */
    /* connection threads are kept and reused: accepted connections wait in `pending` for an idle one */
    struct conn_arg *pending, *pending_tail;
    size_t n_pending, idle_threads, threads_alive;
    bool conn_threads_exit;
    worker *workers;
    long created;
};

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->oom || b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal; bytes that are not valid UTF-8 become U+FFFD. */
static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2; /* the length the lead byte announces */
            if (strnlen(s + i, l) == l && json_utf8_valid(s + i, l)) {
                sb_put(b, s + i, l);
                i += l;
            } else {
                sb_puts(b, "\\ufffd");
                i++;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, s + i, 1);
        }
        i++;
    }
    sb_put(b, "\"", 1);
}

/* ---- socket output ---- */

static bool send_all(int fd, const char *p, size_t n, double deadline) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            double left = deadline - now_s();
            if (left <= 0) return false;
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, (int)(left * 1000) + 1);
            continue;
        }
        return false;
    }
    return true;
}

/* Half-closes, then reads and drops what the client still sends (bounded) before closing, so that
 * unread request bytes do not make the kernel reset the connection before the response arrives. */
static void linger_close(int fd) {
    shutdown(fd, SHUT_WR);
    char tmp[4096];
    size_t dropped = 0;
    double end = now_s() + 1.0;
    while (dropped < (1u << 20)) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) break;
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r <= 0) break;
        dropped += (size_t)r;
    }
    close(fd);
}

/* Head and body leave in one send: two small writes would meet Nagle's algorithm and the client's
 * delayed ACK (a 40 ms stall per response on Linux). */
static bool send_response(int fd, int status, const char *body, size_t len, bool keep_alive,
                          const char *extra_headers, double timeout_s) {
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: %s\r\n%s\r\n",
                      status, http_reason(status), len, keep_alive ? "keep-alive" : "close",
                      extra_headers ? extra_headers : "");
    if (hn < 0 || (size_t)hn >= sizeof head) return false;
    double deadline = now_s() + timeout_s;
    char *all = malloc((size_t)hn + len);
    if (!all) return send_all(fd, head, (size_t)hn, deadline) && send_all(fd, body, len, deadline);
    memcpy(all, head, (size_t)hn);
    memcpy(all + hn, body, len);
    bool ok = send_all(fd, all, (size_t)hn + len, deadline);
    free(all);
    return ok;
}

static void error_body(sbuf *b, const char *message, const char *type, const char *param, const char *code) {
    sb_puts(b, "{\"error\":{\"message\":");
    sb_json_string(b, message);
    sb_puts(b, ",\"type\":");
    sb_json_string(b, type ? type : "invalid_request_error");
    sb_puts(b, ",\"param\":");
    if (param) sb_json_string(b, param);
    else sb_puts(b, "null");
    sb_puts(b, ",\"code\":");
    if (code) sb_json_string(b, code);
    else sb_puts(b, "null");
    sb_puts(b, "}}");
}

static const char *type_for(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 503: return "overloaded_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* ---- the access log ---- */

static void access_log(const server *s, const char *peer, const http_request *r, int status, double ms, size_t inputs) {
    if (s->o.quiet) return;
    char ts[40];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    sbuf b = {0};
    sb_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"peer\":\"%s\",\"method\":", ts, now.tv_nsec / 1000000, peer);
    sb_json_string(&b, r && r->method[0] ? r->method : "-");
    sb_puts(&b, ",\"path\":");
    sb_json_string(&b, r && r->path[0] ? r->path : "-");
    sb_printf(&b, ",\"status\":%d,\"ms\":%.3f,\"inputs\":%zu}\n", status, ms, inputs);
    if (!b.oom) fputs(b.p, stderr);
    free(b.p);
}

/* ---- workers ---- */

static int count_tokens(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                        const void *data) {
    (void)dtype;
    (void)data;
    if (ndim >= 1 && strcmp(name, "input_ids") == 0) *(long *)user = (long)shape[ndim - 1];
    return 0;
}

static int status_for(abc_status st) {
    switch (st) {
    case ABC_ERR_INVALID_ARG:
    case ABC_ERR_IMAGE:
    case ABC_ERR_UNSUPPORTED:
    case ABC_ERR_TOO_LARGE:
    case ABC_ERR_UTF8:
    case ABC_ERR_PROMPT: return 400;
    case ABC_ERR_NOMEM: return 503;
    default: return 500;
    }
}

static abc_input item_input(const api_request *req, size_t i) {
    abc_input in = abc_input_default();
    in.text = req->items[i].text;
    in.image_data = req->items[i].image;
    in.image_size = req->items[i].image_size;
    in.role = req->role;
    in.task = req->task;
    return in;
}

static void job_failed(worker *w, job *j, size_t i, abc_status st) {
    const api_request *req = j->req;
    j->status = status_for(st);
    char where[40] = "";
    if (req->n_items > 1) snprintf(where, sizeof where, "input %zu: ", i);
    api_set_error(&j->err, j->status, type_for(j->status), req->chat ? "messages" : "input", NULL, "%s%s: %s", where,
                  abc_status_string(st), abc_context_errmsg(w->ctx));
}

/* return_multivector: every input's T first (tokenising and preprocessing only), so that a request whose
 * token vectors would pass --max-multivector-floats is refused before anything is allocated for them. */
static void run_multi_job(worker *w, job *j) {
    const api_request *req = j->req;
    const size_t dim = (size_t)w->srv->api.multi_vector_dim, cap = w->srv->o.max_multi_floats;
    size_t total = 0;
    for (size_t i = 0; i < req->n_items; i++) {
        abc_input in = item_input(req, i);
        abc_status st = abc_embed_multi(w->ctx, &in, NULL, 0, &j->n_vectors[i]);
        if (st != ABC_OK) {
            job_failed(w, j, i, st);
            return;
        }
        total += j->n_vectors[i];
        if (total > cap / dim) {
            j->status = 400;
            api_set_error(&j->err, 400, "invalid_request_error", req->chat ? "messages" : "input", "output_too_large",
                          "the token vectors of inputs 0..%zu (%zu vectors of %zu floats) pass this server's limit of "
                          "%zu floats per response (--max-multivector-floats): send fewer or smaller inputs",
                          i, total, dim, cap);
            return;
        }
    }
    j->out = malloc(total * dim * sizeof *j->out);
    if (!j->out) {
        j->status = 503;
        api_set_error(&j->err, 503, "server_error", NULL, "out_of_memory", "out of memory for the token vectors");
        return;
    }
    size_t at = 0;
    for (size_t i = 0; i < req->n_items; i++) {
        abc_input in = item_input(req, i);
        size_t n = 0;
        abc_status st = abc_embed_multi(w->ctx, &in, j->out + at * dim, (total - at) * dim, &n);
        if (st == ABC_OK && n != j->n_vectors[i]) st = ABC_ERR_INTERNAL;
        if (st != ABC_OK) {
            job_failed(w, j, i, st);
            return;
        }
        at += n;
        j->tokens += (long)n; /* one vector per token of the sequence */
    }
}

static void run_job(worker *w, job *j) {
    const api_request *req = j->req;
    size_t dim = (size_t)w->srv->dim;
    if (req->multi_vector) {
        run_multi_job(w, j);
        return;
    }
    for (size_t i = 0; i < req->n_items; i++) {
        abc_input in = item_input(req, i);
        /* a Matryoshka file truncates in the library (its own dims); others keep put_embedding's cut */
        if (w->srv->api.n_matryoshka > 0 && req->dimensions < (int)dim) in.dim = req->dimensions;
        w->last_tokens = 0;
        abc_status st = abc_embed(w->ctx, &in, j->out + i * dim, dim);
        if (st != ABC_OK) {
            job_failed(w, j, i, st);
            return;
        }
        j->tokens += w->last_tokens;
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    server *s = w->srv;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->workers_exit) pthread_cond_wait(&s->work_cond, &s->mu);
        job *j = s->head;
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        run_job(w, j);
        pthread_mutex_lock(&s->mu);
        j->done = true;
        pthread_cond_signal(&j->cond);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Queues the job and waits for a worker to finish it; false when the queue is full. */
static bool submit(server *s, job *j) {
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->queued >= s->o.queue_max) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&j->cond);
        return false;
    }
    j->next = NULL;
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->work_cond);
    while (!j->done) pthread_cond_wait(&j->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&j->cond);
    return true;
}

/* ---- request handling ---- */

typedef struct {
    int status;
    sbuf body;
    const char *extra_headers;
    size_t inputs;
} reply;

static void reply_error(reply *rp, int status, const char *type, const char *param, const char *code, const char *msg) {
    rp->status = status;
    free(rp->body.p);
    memset(&rp->body, 0, sizeof rp->body);
    error_body(&rp->body, msg, type ? type : type_for(status), param, code);
}

static void put_embedding(sbuf *b, const float *v, int d, int dim, bool b64) {
    /* "dimensions": the first d values, L2-normalised again (as OpenAI's shortened embeddings) */
    float scale = 1.0f;
    if (d < dim) {
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)v[k] * v[k];
        scale = ss > 0 ? (float)(1.0 / sqrt(ss)) : 1.0f;
    }
    if (b64) {
        size_t nbytes = (size_t)d * 4;
        uint8_t *raw = malloc(nbytes);
        char *enc = malloc((nbytes + 2) / 3 * 4 + 1);
        if (!raw || !enc) {
            b->oom = true;
        } else {
            for (int k = 0; k < d; k++) { /* little-endian float32, what OpenAI's clients decode */
                float f = d < dim ? v[k] * scale : v[k];
                uint32_t u;
                memcpy(&u, &f, 4);
                raw[4 * k] = (uint8_t)u;
                raw[4 * k + 1] = (uint8_t)(u >> 8);
                raw[4 * k + 2] = (uint8_t)(u >> 16);
                raw[4 * k + 3] = (uint8_t)(u >> 24);
            }
            size_t n = base64_encode(raw, nbytes, enc);
            sb_put(b, "\"", 1);
            sb_put(b, enc, n);
            sb_put(b, "\"", 1);
        }
        free(raw);
        free(enc);
        return;
    }
    sb_reserve(b, (size_t)d * 17 + 2);
    sb_put(b, "[", 1);
    for (int k = 0; k < d; k++) {
        char num[32];
        /* %.9g: the shortest form that always reads back to the same float32 (as `abc embed` prints) */
        int n = snprintf(num, sizeof num, k ? ",%.9g" : "%.9g", (double)(d < dim ? v[k] * scale : v[k]));
        sb_put(b, num, (size_t)n);
    }
    sb_put(b, "]", 1);
}

static void handle_embeddings(server *s, const char *body, size_t len, reply *rp) {
    api_request req;
    api_error e;
    if (!api_parse_embeddings(body, len, &s->api, &req, &e)) {
        reply_error(rp, e.status, e.type, e.param, e.code, e.message);
        return;
    }
    rp->inputs = req.n_items;
    job j;
    memset(&j, 0, sizeof j);
    j.req = &req;
    if (req.multi_vector) j.n_vectors = calloc(req.n_items, sizeof *j.n_vectors);
    else j.out = malloc(req.n_items * (size_t)s->dim * sizeof *j.out);
    if (req.multi_vector ? !j.n_vectors : !j.out) {
        reply_error(rp, 503, NULL, NULL, "out_of_memory", "out of memory for the embeddings");
    } else if (!submit(s, &j)) {
        reply_error(rp, 503, NULL, NULL, "queue_full", "the server is busy (request queue full): retry later");
    } else if (j.status != 0) {
        reply_error(rp, j.err.status, j.err.type, j.err.param, j.err.code, j.err.message);
    } else {
        int d = req.dimensions ? req.dimensions : s->dim;
        sbuf *b = &rp->body;
        sb_puts(b, "{\"object\":\"list\",\"data\":[");
        const int mdim = s->api.multi_vector_dim;
        for (size_t i = 0, at = 0; req.multi_vector && i < req.n_items; i++) {
            /* [T][D] as T arrays, or one base64 string of the T·D little-endian float32 values, row-major */
            const size_t T = j.n_vectors[i];
            sb_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"n_vectors\":%zu,\"dim\":%d,\"embeddings\":",
                      i ? "," : "", i, T, mdim);
            if (req.base64) {
                put_embedding(b, j.out + at * (size_t)mdim, (int)(T * (size_t)mdim), (int)(T * (size_t)mdim), true);
            } else {
                sb_put(b, "[", 1);
                for (size_t t = 0; t < T; t++) {
                    if (t) sb_put(b, ",", 1);
                    put_embedding(b, j.out + (at + t) * (size_t)mdim, mdim, mdim, false);
                }
                sb_put(b, "]", 1);
            }
            sb_put(b, "}", 1);
            at += T;
        }
        for (size_t i = 0; !req.multi_vector && i < req.n_items; i++) {
            sb_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
            /* a Matryoshka file's library already wrote d values, normalised */
            put_embedding(b, j.out + i * (size_t)s->dim, d, s->api.n_matryoshka > 0 ? d : s->dim, req.base64);
            sb_put(b, "}", 1);
        }
        sb_puts(b, "],\"model\":");
        sb_json_string(b, s->model_name);
        sb_printf(b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", j.tokens, j.tokens);
        rp->status = 200;
        if (b->oom) reply_error(rp, 503, NULL, NULL, "out_of_memory", "out of memory writing the response");
    }
    free(j.out);
    free(j.n_vectors);
    api_request_free(&req);
}

/* Authorization: Bearer KEY, compared in constant time. */
static bool authorized(const server *s, const http_request *r) {
    if (!s->o.api_key) return true;
    if (!r->auth_present || r->auth_too_long) return false;
    const char *v = r->authorization;
    if (strncasecmp(v, "Bearer ", 7) != 0) return false; /* the scheme name is case-insensitive */
    v += 7;
    while (*v == ' ') v++;
    return ct_equal(v, strlen(v), s->o.api_key, strlen(s->o.api_key));
}

/* What a client may ask of this model: its tasks ("task"), Matryoshka dims ("dimensions"; empty: any
 * from 1 to embedding_dim) and token vectors ("return_multivector"; multi_vector_dim 0: none). */
static void put_model_features(const server *s, sbuf *b) {
    sb_puts(b, ",\"tasks\":[");
    const char *const *tasks = abc_model_tasks(s->model);
    for (size_t k = 0; tasks && tasks[k]; k++) {
        if (k) sb_put(b, ",", 1);
        sb_json_string(b, tasks[k]);
    }
    sb_puts(b, "],\"default_task\":");
    const char *dflt = abc_model_default_task(s->model);
    if (dflt) sb_json_string(b, dflt);
    else sb_puts(b, "null");
    sb_puts(b, ",\"matryoshka_dims\":[");
    for (int k = 0; k < s->api.n_matryoshka; k++) sb_printf(b, k ? ",%d" : "%d", s->api.matryoshka[k]);
    sb_printf(b, "],\"multi_vector\":%s,\"multi_vector_dim\":%d", s->api.multi_vector_dim ? "true" : "false",
              s->api.multi_vector_dim);
}

static void route(server *s, const http_request *r, const char *body, reply *rp) {
    size_t plen = strcspn(r->path, "?");
    const char *m = r->method;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    if (plen == 7 && memcmp(r->path, "/health", 7) == 0) {
        if (!get) goto not_allowed_get;
        rp->status = 200;
        sb_puts(&rp->body, "{\"status\":\"ok\"}");
    } else if (plen == 10 && memcmp(r->path, "/v1/models", 10) == 0) {
        if (!get) goto not_allowed_get;
        rp->status = 200;
        sb_puts(&rp->body, "{\"object\":\"list\",\"data\":[{\"id\":");
        sb_json_string(&rp->body, s->model_name);
        sb_printf(&rp->body, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"abc\",\"embedding_dim\":%d,"
                  "\"preset\":", s->created, s->dim);
        sb_json_string(&rp->body, abc_model_preset(s->model));
        put_model_features(s, &rp->body);
        sb_puts(&rp->body, "}]}");
    } else if (plen == 14 && memcmp(r->path, "/v1/embeddings", 14) == 0) {
        if (!post) {
            rp->extra_headers = "Allow: POST\r\n";
            reply_error(rp, 405, NULL, NULL, NULL, "use POST for /v1/embeddings");
            return;
        }
        handle_embeddings(s, body, r->body_len, rp);
    } else {
        reply_error(rp, 404, NULL, NULL, NULL, "no such endpoint (POST /v1/embeddings, GET /v1/models, GET /health)");
    }
    return;
not_allowed_get:
    rp->extra_headers = "Allow: GET\r\n";
    reply_error(rp, 405, NULL, NULL, NULL, "use GET for this endpoint");
}

/* ---- connections ---- */

typedef struct conn_arg {
    int fd;
    char peer[64];
    struct conn_arg *next;
} conn_arg;

/* Answers an error and closes: used when the request cannot be read to its end. */
static void fail_conn(server *s, int fd, const char *peer, const http_request *r, int status, const char *msg,
                      const char *extra, double t0) {
    sbuf b = {0};
    error_body(&b, msg, type_for(status), NULL, NULL);
    if (!b.oom) send_response(fd, status, b.p, b.n, false, extra, s->o.timeout_s);
    free(b.p);
    access_log(s, peer, r, status, (now_s() - t0) * 1000, 0);
}

static void serve_connection(server *s, int fd, const char *peer) {
    size_t cap = 16384, len = 0;
    const size_t max_cap = s->lim.max_header_bytes + s->lim.max_body + 65536;
    char *buf = malloc(cap);
    if (!buf) return;
    double idle_since = now_s();
    for (;;) {
        http_request r;
        http_parser_init(&r, &s->lim);
        double t0 = 0, deadline = 0;
        bool sent_continue = false, auth_checked = false;
        int rc = HTTP_NEED_MORE;
        for (;;) {
            if (len > 0) {
                if (t0 == 0) {
                    t0 = now_s();
                    deadline = t0 + s->o.timeout_s;
                }
                rc = http_parse(&r, buf, len);
                if (rc == HTTP_ERROR) {
                    fail_conn(s, fd, peer, &r, r.status, r.error, NULL, t0);
                    goto out;
                }
                if (http_head_done(&r) && !auth_checked) {
                    auth_checked = true;
                    if (!authorized(s, &r)) {
                        fail_conn(s, fd, peer, &r, 401, "a valid API key is required (Authorization: Bearer KEY)",
                                  "WWW-Authenticate: Bearer\r\n", t0);
                        goto out;
                    }
                }
                if (rc == HTTP_DONE) break;
                if (http_head_done(&r) && r.expect_continue && !sent_continue) {
                    sent_continue = true;
                    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                    if (!send_all(fd, cont, sizeof cont - 1, now_s() + s->o.timeout_s)) goto out;
                }
                /* the whole body's size is known: make room once instead of doubling many times */
                if (http_head_done(&r) && !r.chunked && r.head_len + r.content_length > cap) {
                    char *nb = realloc(buf, (size_t)(r.head_len + r.content_length));
                    if (!nb) {
                        fail_conn(s, fd, peer, &r, 503, "out of memory for the request body", NULL, t0);
                        goto out;
                    }
                    buf = nb;
                    cap = (size_t)(r.head_len + r.content_length);
                }
            }
            if (len == cap) {
                if (cap >= max_cap) {
                    fail_conn(s, fd, peer, &r, 413, "request too large", NULL, t0);
                    goto out;
                }
                size_t nc = cap * 2 < max_cap ? cap * 2 : max_cap;
                char *nb = realloc(buf, nc);
                if (!nb) {
                    fail_conn(s, fd, peer, &r, 503, "out of memory for the request", NULL, t0);
                    goto out;
                }
                buf = nb;
                cap = nc;
            }
            double now = now_s();
            if (len == 0) {
                /* idle keep-alive connection: closed on shutdown or after --timeout */
                if (atomic_load(&s->stopping) || now - idle_since > s->o.timeout_s) goto out;
            } else if (now >= deadline) {
                fail_conn(s, fd, peer, &r, 408, "request not received completely within the timeout", NULL, t0);
                goto out;
            }
            double wait = len ? deadline - now : s->o.timeout_s - (now - idle_since);
            if (wait > 0.2) wait = 0.2; /* wake up to notice a shutdown */
            struct pollfd pf = {fd, POLLIN, 0};
            int pr = poll(&pf, 1, (int)(wait * 1000) + 1);
            if (pr < 0 && errno != EINTR) goto out;
            if (pr <= 0) continue;
            ssize_t got = recv(fd, buf + len, cap - len, 0);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got <= 0) {
                /* the client closed (or half-closed) in the middle of a request */
                if (len > 0 && got == 0) fail_conn(s, fd, peer, &r, 400, "request truncated: the connection was closed before its end", NULL, t0);
                goto out;
            }
            len += (size_t)got;
        }
        reply rp;
        memset(&rp, 0, sizeof rp);
        route(s, &r, buf + r.body_off, &rp);
        bool keep = r.keep_alive && !atomic_load(&s->stopping) && rp.status != 0;
        bool sent = !rp.body.oom && send_response(fd, rp.status, rp.body.p ? rp.body.p : "", rp.body.n, keep,
                                                  rp.extra_headers, s->o.timeout_s);
        access_log(s, peer, &r, rp.status, (now_s() - t0) * 1000, rp.inputs);
        free(rp.body.p);
        if (!sent || !keep) goto out;
        memmove(buf, buf + r.consumed, len - r.consumed);
        len -= r.consumed;
        idle_since = now_s();
        /* a large buffer from one big request is not kept for the idle connection */
        if (cap > 65536 && len <= 16384) {
            char *nb = realloc(buf, 16384);
            if (nb) {
                buf = nb;
                cap = 16384;
            }
        }
    }
out:
    free(buf);
    linger_close(fd);
}

/* A connection thread: serves accepted connections one after another, idle in between, until shutdown.
 * Reusing threads keeps a stream of short connections from paying (and, under some emulators and
 * allocators, accumulating) a thread creation each. */
static void *conn_main(void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->conn_threads_exit) {
            s->idle_threads++;
            pthread_cond_wait(&s->conn_work, &s->mu);
            s->idle_threads--;
        }
        conn_arg *a = s->pending;
        if (!a) break;
        s->pending = a->next;
        if (!s->pending) s->pending_tail = NULL;
        s->n_pending--;
        pthread_mutex_unlock(&s->mu);
        /* a client that stops reading cannot hold this thread in send() beyond --timeout */
        struct timeval tv = {(time_t)s->o.timeout_s, 0};
        setsockopt(a->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1; /* every write is a complete response (or 100 Continue): nothing to coalesce */
        setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve_connection(s, a->fd, a->peer);
        free(a);
        pthread_mutex_lock(&s->mu);
        s->active_conns--;
        pthread_cond_broadcast(&s->conns_cond);
    }
    s->threads_alive--;
    pthread_cond_broadcast(&s->conns_cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- signals ---- */

typedef struct {
    server *srv;
    sigset_t set;
    atomic_int got;
} sig_arg;

static void *signal_main(void *arg) {
    sig_arg *a = arg;
    int sig = 0;
    sigwait(&a->set, &sig);
    atomic_store(&a->got, sig);
    atomic_store(&a->srv->stopping, 1);
    return NULL;
}

/* ---- options ---- */

static void print_serve_usage(FILE *f) {
    fputs("usage: abc serve -m MODEL [--host 127.0.0.1] [--port 8080] [--workers W] [--threads T]\n"
          "                 [--api-key KEY] [--max-body BYTES] [--timeout S] [--allow-local-files DIR]\n"
          "\n"
          "Serves POST /v1/embeddings (OpenAI and vLLM request shapes; \"return_multivector\": true for the\n"
          "token vectors of multi-vector models), GET /v1/models and GET /health\n"
          "over HTTP/1.1 until SIGINT or SIGTERM (README \"Serving\").\n"
          "\n"
          "  -m, --model MODEL          .abc weight file\n"
          "  --host HOST                address to bind (default 127.0.0.1: this machine only)\n"
          "  --port N                   TCP port (default 8080; 0: any free port, printed at start)\n"
          "  --workers W                embedding workers, one context each (default 1)\n"
          "  --threads T                threads per worker (default: online CPUs / W)\n"
          "  --api-key KEY              require 'Authorization: Bearer KEY' (or set ABC_API_KEY)\n"
          "  --model-name NAME          model id of the API (default: the file name without .abc)\n"
          "  --max-body BYTES           largest request body (default 33554432; 413 beyond)\n"
          "  --max-header-bytes BYTES   largest request head (default 16384; 431 beyond)\n"
          "  --max-headers N            most header fields (default 64; 431 beyond)\n"
          "  --max-inputs N             most inputs per request (default 2048; 400 beyond)\n"
          "  --max-image-pixels N       largest decoded image (default 40000000; 400 beyond)\n"
          "  --max-multivector-floats N most token-vector floats in one return_multivector response\n"
          "                             (default 4194304; 400 beyond)\n"
          "  --queue N                  most requests waiting for a worker (default 64; 503 beyond)\n"
          "  --max-connections N        most open connections (default 64; 503 beyond)\n"
          "  --timeout S                seconds to receive a whole request, and idle keep-alive\n"
          "                             limit (default 30; 408 beyond)\n"
          "  --allow-local-files DIR    accept file:// image URLs naming files inside DIR\n"
          "  --num-crops N              phi3_v: most crops per image (default: the model file's)\n"
          "  --quiet                    no access log on stderr\n",
          f);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int serve_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("abc: usage error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(run 'abc serve --help')\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static bool parse_size(const char *s, unsigned long long lo, unsigned long long hi, unsigned long long *out) {
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* 4 GiB, or a quarter of the address space on 32-bit targets (the buffer holds the body plus its head) */
#define MAX_BODY_LIMIT ((unsigned long long)SIZE_MAX / 4 < (1ull << 32) ? (unsigned long long)SIZE_MAX / 4 : (1ull << 32))

static int parse_options(int argc, char **argv, serve_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->workers = 1;
    o->max_body = 32u << 20;
    o->max_header_bytes = 16384;
    o->max_headers = 64;
    o->max_inputs = 2048;
    o->queue_max = 64;
    o->max_conns = 64;
    o->max_pixels = 40000000;
    o->max_multi_floats = 4u << 20;
    o->timeout_s = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_serve_usage(stdout);
            return -1;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        static const char *const with_value[] = {"-m", "--model", "--host", "--port", "--workers", "--threads",
                                                 "--api-key", "--model-name", "--max-body", "--max-header-bytes",
                                                 "--max-headers", "--max-inputs", "--max-image-pixels", "--queue",
                                                 "--max-connections", "--timeout", "--allow-local-files",
                                                 "--num-crops", "--max-multivector-floats"};
        const char *name = NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) {
            size_t n = strlen(with_value[k]);
            if (strcmp(a, with_value[k]) == 0) {
                if (i + 1 >= argc) return serve_usage_error("%s needs a value", a);
                name = with_value[k];
                v = argv[++i];
                break;
            }
            if (strncmp(a, with_value[k], n) == 0 && a[n] == '=' && with_value[k][1] == '-') {
                name = with_value[k];
                v = a + n + 1;
                break;
            }
        }
        if (!name) return serve_usage_error("serve: unknown %s '%s'", a[0] == '-' ? "option" : "argument", a);
        unsigned long long n = 0;
#define NUM(lo, hi) \
    if (!parse_size(v, (lo), (hi), &n)) return serve_usage_error("%s must be an integer from %llu to %llu, not '%s'", name, (unsigned long long)(lo), (unsigned long long)(hi), v)
        if (!strcmp(name, "-m") || !strcmp(name, "--model")) o->model_path = v;
        else if (!strcmp(name, "--host")) o->host = v;
        else if (!strcmp(name, "--api-key")) o->api_key = v;
        else if (!strcmp(name, "--model-name")) o->model_name = v;
        else if (!strcmp(name, "--allow-local-files")) o->allow_dir = v;
        else if (!strcmp(name, "--port")) { NUM(0, 65535); o->port = (int)n; }
        else if (!strcmp(name, "--workers")) { NUM(1, 256); o->workers = (int)n; }
        else if (!strcmp(name, "--threads")) { NUM(1, 1024); o->threads = (int)n; }
        else if (!strcmp(name, "--num-crops")) { NUM(1, 4096); o->num_crops = (int)n; }
        else if (!strcmp(name, "--max-body")) { NUM(1024, MAX_BODY_LIMIT); o->max_body = (size_t)n; }
        else if (!strcmp(name, "--max-header-bytes")) { NUM(256, 1u << 20); o->max_header_bytes = (size_t)n; }
        else if (!strcmp(name, "--max-headers")) { NUM(1, 10000); o->max_headers = (size_t)n; }
        else if (!strcmp(name, "--max-inputs")) { NUM(1, 1000000); o->max_inputs = (size_t)n; }
        else if (!strcmp(name, "--max-image-pixels")) { NUM(1, 1ull << 40); o->max_pixels = (size_t)n; }
        else if (!strcmp(name, "--max-multivector-floats")) { NUM(1, 1u << 28); o->max_multi_floats = (size_t)n; }
        else if (!strcmp(name, "--queue")) { NUM(1, 1000000); o->queue_max = (size_t)n; }
        else if (!strcmp(name, "--max-connections")) { NUM(1, 100000); o->max_conns = (size_t)n; }
        else if (!strcmp(name, "--timeout")) { NUM(1, 86400); o->timeout_s = (double)n; }
#undef NUM
    }
    if (!o->model_path) return serve_usage_error("serve: -m MODEL is required");
    if (!o->api_key) {
        const char *env = getenv("ABC_API_KEY");
        if (env && *env) o->api_key = env;
    }
    if (o->api_key && (!*o->api_key || strlen(o->api_key) > 256))
        return serve_usage_error("--api-key must be 1 to 256 characters");
    if (o->api_key)
        for (const char *c = o->api_key; *c; c++)
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
                return serve_usage_error("--api-key must be printable ASCII without spaces");
    return EXIT_OK;
}

static int serve_fail(const char *what, const char *detail) {
    fprintf(stderr, "abc: error: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return EXIT_FAILED;
}

static int open_listener(server *s, char *bound, size_t bound_size) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    int gai = getaddrinfo(s->o.host, port, &hints, &res);
    if (gai != 0) return serve_fail("cannot resolve --host", gai_strerror(gai));
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return serve_fail("cannot listen", strerror(err));
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int actual = s->o.port;
    char host[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            actual = ntohs(in->sin_port);
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
            actual = ntohs(in->sin6_port);
            inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
        }
    }
    snprintf(bound, bound_size, "\"host\":\"%s\",\"port\":%d", host, actual);
    s->listen_fd = fd;
    return EXIT_OK;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t n) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
        port = ntohs(in->sin6_port);
    }
    snprintf(out, n, "%s:%d", host, port);
}

static void accept_loop(server *s) {
    while (!atomic_load(&s->stopping)) {
        struct pollfd pf = {s->listen_fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(s->listen_fd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) { /* out of descriptors: let some close */
                struct timespec ts = {0, 50000000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        conn_arg *a = malloc(sizeof *a);
        pthread_mutex_lock(&s->mu);
        bool room = s->active_conns < s->o.max_conns, spawn = false;
        if (room && a) {
            s->active_conns++;
            a->fd = fd;
            peer_name(&ss, a->peer, sizeof a->peer);
            a->next = NULL;
            if (s->pending_tail) s->pending_tail->next = a;
            else s->pending = a;
            s->pending_tail = a;
            s->n_pending++;
            /* each idle thread takes one waiting connection; more waiting than idle: one more thread */
            spawn = s->n_pending > s->idle_threads;
            if (spawn) s->threads_alive++;
            else pthread_cond_signal(&s->conn_work);
        }
        pthread_mutex_unlock(&s->mu);
        if (!room || !a) {
            static const char busy[] = "{\"error\":{\"message\":\"too many connections: retry later\","
                                       "\"type\":\"overloaded_error\",\"param\":null,\"code\":\"too_many_connections\"}}";
            char head[200];
            int hn = snprintf(head, sizeof head, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\nConnection: close\r\n\r\n", sizeof busy - 1);
            send(fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT);
            send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            free(a);
            continue;
        }
        if (!spawn) continue;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        if (pthread_create(&t, &at, conn_main, s) != 0) {
            /* no new thread: the connection waits for a busy one to finish, or is closed if there is none */
            pthread_mutex_lock(&s->mu);
            s->threads_alive--;
            if (s->threads_alive == 0) {
                while (s->pending) {
                    conn_arg *p = s->pending;
                    s->pending = p->next;
                    close(p->fd);
                    free(p);
                    s->n_pending--;
                    s->active_conns--;
                }
                s->pending_tail = NULL;
            }
            pthread_mutex_unlock(&s->mu);
        }
        pthread_attr_destroy(&at);
    }
}

int cmd_serve(int argc, char **argv) {
    server *s = calloc(1, sizeof *s);
    if (!s) return serve_fail("out of memory", NULL);
    int rc = parse_options(argc, argv, &s->o);
    if (rc != EXIT_OK) {
        free(s);
        return rc < 0 ? EXIT_OK : rc;
    }
    serve_options *o = &s->o;
    s->listen_fd = -1;
    s->created = (long)time(NULL);
    if (o->allow_dir && !realpath(o->allow_dir, s->allow_real)) {
        rc = serve_fail("--allow-local-files", strerror(errno));
        free(s);
        return rc;
    }

    /* SIGINT/SIGTERM are taken by signal_main via sigwait: blocked here, before any thread exists, so
     * every thread (the library's included) inherits the mask */
    sig_arg sa;
    memset(&sa, 0, sizeof sa);
    sa.srv = s;
    sigemptyset(&sa.set);
    sigaddset(&sa.set, SIGINT);
    sigaddset(&sa.set, SIGTERM);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &sa.set, &old);
    signal(SIGPIPE, SIG_IGN);

    abc_model_params mp = abc_model_default_params();
    mp.max_image_pixels = o->max_pixels;
    mp.num_crops = o->num_crops;
    abc_error err = {0};
    abc_status st = abc_model_load(o->model_path, &mp, &s->model, &err);
    if (st != ABC_OK) {
        fprintf(stderr, "abc: error: %s: %s\n", abc_status_string(st), err.message);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(s);
        return EXIT_FAILED;
    }
    s->dim = abc_model_embedding_dim(s->model);
    if (s->dim == 0 && abc_model_multi_vector_dim(s->model) == 0) { /* neither output: nothing to serve */
        fprintf(stderr, "abc: error: %s: preset %s has no output to serve\n", abc_status_string(ABC_ERR_UNSUPPORTED),
                abc_model_preset(s->model));
        abc_model_free(s->model);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(s);
        return EXIT_FAILED;
    }
    if (o->model_name) {
        snprintf(s->model_name, sizeof s->model_name, "%s", o->model_name);
    } else {
        const char *base = strrchr(o->model_path, '/');
        base = base ? base + 1 : o->model_path;
        snprintf(s->model_name, sizeof s->model_name, "%s", base);
        size_t n = strlen(s->model_name);
        if (n > 4 && strcmp(s->model_name + n - 4, ".abc") == 0) s->model_name[n - 4] = 0;
    }
    s->api.max_inputs = o->max_inputs;
    s->api.allow_dir = o->allow_dir ? s->allow_real : NULL;
    s->api.max_file_bytes = o->max_body;
    s->api.model_name = s->model_name;
    s->api.embedding_dim = s->dim;
    s->api.matryoshka = abc_model_matryoshka_dims(s->model, &s->api.n_matryoshka);
    s->api.tasks = abc_model_tasks(s->model);
    s->api.multi_vector_dim = abc_model_multi_vector_dim(s->model);
    s->api.preset = abc_model_preset(s->model);
    s->lim.max_body = o->max_body;
    s->lim.max_header_bytes = o->max_header_bytes;
    s->lim.max_headers = o->max_headers;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cond, NULL);
    pthread_cond_init(&s->conns_cond, NULL);
    pthread_cond_init(&s->conn_work, NULL);

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = o->threads ? o->threads : (int)(ncpu > o->workers ? ncpu / o->workers : 1);
    s->workers = calloc((size_t)o->workers, sizeof *s->workers);
    int started = 0;
    char bound[128] = "";
    pthread_t sig_thread;
    bool sig_started = false;
    rc = s->workers ? EXIT_OK : serve_fail("out of memory", NULL);
    for (int i = 0; rc == EXIT_OK && i < o->workers; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        abc_context_params cp = abc_context_default_params();
        cp.n_threads = threads;
        cp.on_stage = count_tokens;
        cp.on_stage_user = &w->last_tokens;
        st = abc_context_new(s->model, &cp, &w->ctx, &err);
        if (st != ABC_OK) {
            fprintf(stderr, "abc: error: %s: %s\n", abc_status_string(st), err.message);
            rc = EXIT_FAILED;
            break;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            abc_context_free(w->ctx);
            w->ctx = NULL;
            rc = serve_fail("cannot start a worker thread", NULL);
            break;
        }
        started++;
    }
    if (rc == EXIT_OK) rc = open_listener(s, bound, sizeof bound);
    if (rc == EXIT_OK) {
        sig_started = pthread_create(&sig_thread, NULL, signal_main, &sa) == 0;
        if (!sig_started) rc = serve_fail("cannot start the signal thread", NULL);
    }
    if (rc == EXIT_OK) {
        fprintf(stderr, "{\"event\":\"listening\",%s,\"model\":", bound);
        sbuf b = {0};
        sb_json_string(&b, s->model_name);
        fprintf(stderr, "%s,\"dim\":%d,\"workers\":%d,\"threads\":%d,\"auth\":%s}\n", b.p ? b.p : "\"\"", s->dim,
                o->workers, threads, o->api_key ? "true" : "false");
        free(b.p);
        fflush(stderr);
        accept_loop(s);
        /* stop: no new connections; open ones finish their request in progress and close */
        close(s->listen_fd);
        s->listen_fd = -1;
        pthread_mutex_lock(&s->mu);
        while (s->active_conns > 0) pthread_cond_wait(&s->conns_cond, &s->mu);
        /* then the idle connection threads leave; none touches the server after threads_alive is 0 */
        s->conn_threads_exit = true;
        pthread_cond_broadcast(&s->conn_work);
        while (s->threads_alive > 0) pthread_cond_wait(&s->conns_cond, &s->mu);
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "{\"event\":\"stopped\",\"signal\":%d}\n", atomic_load(&sa.got));
    }
    if (sig_started) {
        if (!atomic_load(&sa.got)) pthread_kill(sig_thread, SIGTERM); /* blocked everywhere: only sigwait sees it */
        pthread_join(sig_thread, NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->workers_exit = true;
    pthread_cond_broadcast(&s->work_cond);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < started; i++) pthread_join(s->workers[i].thread, NULL);
    for (int i = 0; s->workers && i < o->workers; i++) abc_context_free(s->workers[i].ctx);
    if (s->listen_fd >= 0) close(s->listen_fd);
    free(s->workers);
    abc_model_free(s->model);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cond);
    pthread_cond_destroy(&s->conns_cond);
    pthread_cond_destroy(&s->conn_work);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(s);
    return rc;
}
