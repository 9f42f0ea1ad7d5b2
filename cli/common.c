/* common.c — helpers of the collection commands (batch embedding, search, eval); see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "model_convert/json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("abc: usage error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(run 'abc --help' or 'abc <command> --help')\n", stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_report(abc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "abc: error: %s: ", abc_status_string(status));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_FAILED;
}

bool cli_take(cli_args *c, const char *name, const char *alias, const char **value) {
    const char *arg = c->argv[c->i];
    const char *names[2] = {name, alias};
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        size_t n = strlen(names[k]);
        if (strncmp(arg, names[k], n) != 0) continue;
        if (arg[n] == '=' && names[k][1] == '-') {
            *value = arg + n + 1;
            return true;
        }
        if (arg[n] != 0) continue;
        if (c->i + 1 >= c->argc) {
            cli_usage_error("option %s needs a value", names[k]);
            c->bad = true;
            return true;
        }
        *value = c->argv[++c->i];
        return true;
    }
    return false;
}

bool cli_parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_role(const char *s, abc_role *role) {
    if (strcmp(s, "query") == 0) *role = ABC_ROLE_QUERY;
    else if (strcmp(s, "candidate") == 0) *role = ABC_ROLE_CANDIDATE;
    else if (strcmp(s, "auto") == 0) *role = ABC_ROLE_AUTO;
    else return false;
    return true;
}

int cli_read_file(const char *path, char **data, size_t *size, char *err, size_t errlen) {
    *data = NULL;
    *size = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    const bool oom = !buf, failed = oom || ferror(f);
    if (f != stdin) fclose(f);
    if (failed) {
        free(buf);
        snprintf(err, errlen, oom ? "out of memory reading '%s'" : "cannot read '%s'", path);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return 0;
}

int cli_split_lines(char *data, size_t size, char ***lines, size_t **lens, size_t *n) {
    size_t count = 0;
    for (size_t k = 0; k < size; k++) count += data[k] == '\n';
    if (size > 0 && data[size - 1] != '\n') count++;
    *lines = malloc((count ? count : 1) * sizeof **lines);
    *lens = malloc((count ? count : 1) * sizeof **lens);
    if (!*lines || !*lens) {
        free(*lines);
        free(*lens);
        *lines = NULL;
        *lens = NULL;
        return -1;
    }
    size_t start = 0, j = 0;
    for (size_t k = 0; k <= size && j < count; k++) {
        if (k < size && data[k] != '\n') continue;
        size_t len = k - start;
        if (len > 0 && data[start + len - 1] == '\r') len--;
        data[start + len] = 0;
        (*lines)[j] = data + start;
        (*lens)[j] = len;
        j++;
        start = k + 1;
    }
    *n = count;
    return 0;
}

void cli_json_string(FILE *f, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    for (size_t k = 0; k < n; k++) {
        unsigned c = s[k];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc((int)c, f);
    }
    fputc('"', f);
}

void cli_json_float(FILE *f, float v) {
    if (isfinite(v)) fprintf(f, "%.9g", (double)v);
    else fputs("null", f);
}

char *cli_resolve_path(const char *dir, const char *path) {
    size_t dn = dir ? strlen(dir) : 0, pn = strlen(path);
    if (dn == 0 || path[0] == '/') return strdup(path);
    char *out = malloc(dn + pn + 2);
    if (!out) return NULL;
    memcpy(out, dir, dn);
    size_t k = dn;
    if (out[k - 1] != '/') out[k++] = '/';
    memcpy(out + k, path, pn + 1);
    return out;
}

char *cli_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup("");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    memcpy(out, path, n);
    out[n] = 0;
    return out;
}

int cli_write_file_atomic(const char *path, const void *data, size_t size, char *err, size_t errlen) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 8);
    if (!tmp) {
        snprintf(err, errlen, "out of memory writing '%s'", path);
        return -1;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        left -= (size_t)w;
    }
    int e = errno;
    if (close(fd) != 0 && left == 0) left = 1, e = errno;
    if (left > 0 || rename(tmp, path) != 0) {
        if (left == 0) e = errno;
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(e));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the parallel scheduler ---- */

typedef struct {
    const cli_embed_job *job;
    const size_t *list; /* indices this phase embeds */
    size_t n_list;
    size_t chunk;       /* inputs a worker takes at once (several: through abc_embed_batch) */
    size_t next;        /* next position in list */
    bool stop;
    bool failed;        /* storage failed: reported once */
    char message[512];
    pthread_mutex_t lock;
} sched;

typedef struct {
    sched *s;
    abc_context *ctx;
    float *rows;          /* chunk rows of scratch (the chunk's rows are not contiguous in job->out) */
    abc_input *inputs;    /* the chunk's inputs, side by side for abc_embed_batch */
    abc_status *statuses;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    sched *s = w->s;
    const cli_embed_job *job = s->job;
    const size_t dim = (size_t)abc_model_embedding_dim(job->model);
    size_t indices[CLI_TEXT_CHUNK];
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->stop || s->next >= s->n_list) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        size_t n = 0;
        while (n < s->chunk && s->next < s->n_list) {
            indices[n] = s->list[s->next++];
            if (job->start) job->start(job->user, indices[n]);
            n++;
        }
        pthread_mutex_unlock(&s->lock);

        if (n == 1) {
            w->statuses[0] = abc_embed(w->ctx, &job->inputs[indices[0]], w->rows, dim);
        } else {
            for (size_t k = 0; k < n; k++) w->inputs[k] = job->inputs[indices[k]];
            abc_embed_batch(w->ctx, w->inputs, n, w->rows, w->statuses); /* rows of failed inputs are NaN */
        }
        for (size_t k = 0; k < n; k++) {
            float *row = w->rows + k * dim;
            abc_status st = w->statuses[k];
            /* the batch keeps only the first failure's message: an input that failed is run alone for its own */
            if (st != ABC_OK && n > 1) st = abc_embed(w->ctx, &job->inputs[indices[k]], row, dim);
            if (st != ABC_OK)
                for (size_t c = 0; c < dim; c++) row[c] = NAN;
            /* abc_embed wrote only a Matryoshka input's first dim values; abc_embed_batch zeroes the rest */
            const size_t kept = (size_t)job->inputs[indices[k]].dim;
            if (st == ABC_OK && kept > 0 && kept < dim) memset(row + kept, 0, (dim - kept) * sizeof *row);
            if (job->out) memcpy(job->out + indices[k] * dim, row, dim * sizeof *row);
            char err[512] = "";
            bool stored = !job->store || job->store(job->user, indices[k], row, err, sizeof err);

            pthread_mutex_lock(&s->lock);
            if (!stored) {
                if (!s->failed) snprintf(s->message, sizeof s->message, "%s", err);
                s->failed = s->stop = true;
            } else if (job->done && !job->done(job->user, indices[k], st, st == ABC_OK ? "" : abc_context_errmsg(w->ctx))) {
                s->stop = true;
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

/* Runs `n_workers` workers of `per_worker` threads each over `list`. */
static int run_phase(const cli_embed_job *job, const size_t *list, size_t n_list, int n_workers, int per_worker,
                     size_t chunk, bool *stopped) {
    if (n_list == 0) return CLI_EXIT_OK;
    if ((size_t)n_workers > n_list) n_workers = (int)n_list;
    /* every worker gets work: chunks no larger than an even share */
    if (chunk > 1 && chunk > (n_list + (size_t)n_workers - 1) / (size_t)n_workers)
        chunk = (n_list + (size_t)n_workers - 1) / (size_t)n_workers;
    sched s = {job, list, n_list, chunk, 0, false, false, "", PTHREAD_MUTEX_INITIALIZER};
    worker *ws = calloc((size_t)n_workers, sizeof *ws);
    pthread_t *tids = calloc((size_t)n_workers, sizeof *tids);
    const size_t dim = (size_t)abc_model_embedding_dim(job->model);
    int rc = CLI_EXIT_OK, started = 0;
    if (!ws || !tids) rc = cli_report(ABC_ERR_NOMEM, "out of memory starting workers");
    for (int k = 0; rc == CLI_EXIT_OK && k < n_workers; k++) {
        abc_context_params cp = abc_context_default_params();
        cp.n_threads = per_worker;
        abc_error err = {0};
        ws[k].s = &s;
        abc_status st = abc_context_new(job->model, &cp, &ws[k].ctx, &err);
        if (st != ABC_OK) rc = cli_report(st, "%s", err.message);
        else if (!(ws[k].rows = malloc(chunk * dim * sizeof(float))) ||
                 !(ws[k].inputs = malloc(chunk * sizeof(abc_input))) ||
                 !(ws[k].statuses = malloc(chunk * sizeof(abc_status))))
            rc = cli_report(ABC_ERR_NOMEM, "out of memory for %zu embedding rows", chunk);
    }
    /* One worker runs on this thread: a single-worker phase starts no extra thread. */
    for (int k = 1; rc == CLI_EXIT_OK && k < n_workers; k++, started++)
        if (pthread_create(&tids[k], NULL, worker_main, &ws[k]) != 0) {
            rc = cli_report(ABC_ERR_NOMEM, "cannot start a worker thread");
            pthread_mutex_lock(&s.lock);
            s.stop = true;
            pthread_mutex_unlock(&s.lock);
        }
    if (rc == CLI_EXIT_OK) worker_main(&ws[0]);
    for (int k = 1; k <= started; k++) pthread_join(tids[k], NULL);
    if (rc == CLI_EXIT_OK && s.failed) rc = cli_report(ABC_ERR_IO, "%s", s.message);
    if (s.stop) *stopped = true;
    for (int k = 0; ws && k < n_workers; k++) {
        abc_context_free(ws[k].ctx);
        free(ws[k].rows);
        free(ws[k].inputs);
        free(ws[k].statuses);
    }
    free(ws);
    free(tids);
    pthread_mutex_destroy(&s.lock);
    return rc;
}

int cli_embed_many(const cli_embed_job *job) {
    int threads = job->threads;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    size_t *heavy = malloc((job->n_todo ? job->n_todo : 1) * sizeof *heavy);
    size_t *light = malloc((job->n_todo ? job->n_todo : 1) * sizeof *light);
    if (!heavy || !light) {
        free(heavy);
        free(light);
        return cli_report(ABC_ERR_NOMEM, "out of memory scheduling %zu inputs", job->n_todo);
    }
    size_t nh = 0, nl = 0;
    for (size_t k = 0; k < job->n_todo; k++) {
        const abc_input *in = &job->inputs[job->todo[k]];
        bool image = in->image_path || in->image_data || in->rgb;
        if (image) heavy[nh++] = job->todo[k];
        else light[nl++] = job->todo[k];
    }
    bool stopped = false;
    int rc = run_phase(job, heavy, nh, 1, threads, 1, &stopped);
    if (rc == CLI_EXIT_OK && !stopped) rc = run_phase(job, light, nl, threads, 1, CLI_TEXT_CHUNK, &stopped);
    free(heavy);
    free(light);
    return rc;
}

/* ---- --dim and the index's record of how it was embedded ---- */

int cli_check_dim(const abc_model *model, const char *model_path, long dim) {
    const int full = abc_model_embedding_dim(model);
    int n = 0;
    const int *dims = abc_model_matryoshka_dims(model, &n);
    if (full == 0) return cli_usage_error("--dim: '%s' has no single embedding to truncate", model_path);
    if (dim < 1 || dim > full) return cli_usage_error("--dim must be from 1 to %d (the model's width), not %ld", full, dim);
    bool listed = n == 0 || dim == full;
    for (int k = 0; k < n && !listed; k++) listed = dims[k] == dim;
    if (listed) return CLI_EXIT_OK;
    char list[256] = "";
    for (int k = 0, at = 0; k < n && at < (int)sizeof list - 16; k++)
        at += snprintf(list + at, sizeof list - (size_t)at, "%s%d", k ? ", " : "", dims[k]);
    return cli_usage_error("--dim %ld is not one of '%s''s Matryoshka dims (%s)", dim, model_path, list);
}

char *cli_companion_path(const char *npy_path, const char *suffix) {
    size_t n = strlen(npy_path), base = n > 4 && strcmp(npy_path + n - 4, ".npy") == 0 ? n - 4 : n;
    size_t sn = strlen(suffix);
    char *p = malloc(base + sn + 1);
    if (p) {
        memcpy(p, npy_path, base);
        memcpy(p + base, suffix, sn + 1);
    }
    return p;
}

/* The task an input runs: its own, else the file's default (NULL: a file without tasks). */
static const char *input_task(const abc_model *model, const char *task) {
    return task ? task : abc_model_default_task(model);
}

int cli_write_index_meta(const char *index_path, const abc_model *model, const abc_input *inputs, size_t n,
                         bool multi, char *err, size_t errlen) {
    const int full = multi ? abc_model_multi_vector_dim(model) : abc_model_embedding_dim(model);
    int dim = full;
    const char *task = n ? input_task(model, inputs[0].task) : abc_model_default_task(model);
    bool mixed_dim = false, mixed_task = false;
    for (size_t k = 0; k < n; k++) {
        const int d = !multi && inputs[k].dim > 0 && inputs[k].dim < full ? inputs[k].dim : full;
        const char *t = input_task(model, inputs[k].task);
        if (k == 0) dim = d;
        mixed_dim |= d != dim;
        mixed_task |= (t == NULL) != (task == NULL) || (t && strcmp(t, task) != 0);
    }
    char *path = cli_companion_path(index_path, ".meta.json"), buf[512];
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int len = snprintf(buf, sizeof buf, "{\"preset\":\"%s\",\"multi_vector\":%s,\"dim\":", abc_model_preset(model),
                       multi ? "true" : "false");
    len += mixed_dim ? snprintf(buf + len, sizeof buf - (size_t)len, "\"mixed\"")
                     : snprintf(buf + len, sizeof buf - (size_t)len, "%d", dim);
    /* task names are [A-Za-z0-9_-] (the converter checks), so they need no escaping */
    len += mixed_task ? snprintf(buf + len, sizeof buf - (size_t)len, ",\"task\":\"mixed\"}\n")
           : task     ? snprintf(buf + len, sizeof buf - (size_t)len, ",\"task\":\"%.64s\"}\n", task)
                      : snprintf(buf + len, sizeof buf - (size_t)len, ",\"task\":null}\n");
    int rc = cli_write_file_atomic(path, buf, (size_t)len, err, errlen);
    free(path);
    return rc;
}

int cli_check_index_meta(const char *index_path, const abc_model *model, const char *task, int dim, bool multi,
                         bool *recorded) {
    char *path = cli_companion_path(index_path, ".meta.json"), *data = NULL, err[256];
    size_t size = 0;
    *recorded = false;
    if (!path) return cli_report(ABC_ERR_NOMEM, "out of memory");
    if (access(path, F_OK) != 0) { /* no record: an index made by other means */
        free(path);
        return CLI_EXIT_OK;
    }
    *recorded = true;
    int rc = CLI_EXIT_OK;
    json_value *doc = NULL;
    if (cli_read_file(path, &data, &size, err, sizeof err) != 0) rc = cli_report(ABC_ERR_IO, "%s", err);
    else if (!(doc = json_parse(data, size, err, sizeof err)) || doc->type != JSON_OBJECT)
        rc = cli_report(ABC_ERR_FORMAT, "'%s': not the JSON object abc embed --batch writes%s%s", path, doc ? "" : ": ",
                        doc ? "" : err);
    const json_value *preset = rc ? NULL : json_get(doc, "preset"), *d = rc ? NULL : json_get(doc, "dim");
    const json_value *t = rc ? NULL : json_get(doc, "task");
    const int full = multi ? abc_model_multi_vector_dim(model) : abc_model_embedding_dim(model);
    const int want = !multi && dim > 0 && dim < full ? dim : full;
    const char *qtask = input_task(model, task);
    if (rc) {
    } else if (preset && preset->type == JSON_STRING && strcmp(preset->string, abc_model_preset(model)) != 0) {
        rc = cli_report(ABC_ERR_INVALID_ARG, "the index was embedded with preset %.64s ('%s'), the query with %s",
                        preset->string, path, abc_model_preset(model));
    } else if (d && d->type == JSON_STRING) { /* "mixed" */
        rc = cli_report(ABC_ERR_INVALID_ARG, "the index's rows were embedded at different Matryoshka dims ('%s'): their "
                        "scores do not compare; rebuild it with one \"dim\" for every line", path);
    } else if (d && d->type == JSON_NUMBER && d->number != (double)want) {
        rc = cli_report(ABC_ERR_INVALID_ARG, "the index was embedded at dim %.0f ('%s'), the query at %d: give --dim %.0f "
                        "(or rebuild the index at %d)", d->number, path, want, d->number, want);
    } else if (t && t->type == JSON_STRING && !strcmp(t->string, "mixed")) {
        rc = cli_report(ABC_ERR_INVALID_ARG, "the index's rows were embedded with different tasks ('%s'): rebuild it "
                        "with one \"task\" for every line", path);
    } else if (t && t->type == JSON_STRING && (!qtask || strcmp(t->string, qtask) != 0)) {
        rc = cli_report(ABC_ERR_INVALID_ARG, "the index was embedded with task %.64s ('%s'), the query with %s: give "
                        "--task %.64s", t->string, path, qtask ? qtask : "none", t->string);
    }
    json_free(doc);
    free(data);
    free(path);
    return rc;
}
