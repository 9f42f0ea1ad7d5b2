/* batch.c — `abc embed --batch INPUTS.jsonl -o OUT.npy`: many inputs per process, with resume, shards,
 * --keep-going and progress (README "Collections").
 *
 * Crash safety: rows are written in place into OUT.partial (a complete .npy of the final shape,
 * preallocated) and each finished row is then recorded by one append to OUT.progress ("D row", or
 * "E row message" under --keep-going; "S row" when a row starts). The log's first line identifies the
 * job (a hash of the model, the shard's input lines and the shard), so --resume never mixes jobs. After
 * a kill at any moment, the rows logged as done are in the partial file (their pwrite came before the
 * log append), a torn last log line is ignored, and only the rows in flight are recomputed. At the end
 * OUT.ids / OUT.errors are written (temp + rename), the partial file is renamed to OUT (or converted to
 * OUT.jsonl) and the log removed: nothing half-written ever carries a final name. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64 /* partial files over 2 GB on 32-bit targets */
#include "common.h"
#include "model_convert/json.h"
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *id;       /* the row's id: its "id", or its 0-based line number */
    char *image;    /* resolved path or NULL */
    char *text, *prompt, *instruction, *task;
    abc_role role;
    int dim;        /* "dim": Matryoshka truncation, 0 for the full width */
    char *error;    /* why the line cannot be embedded, or NULL */
} batch_row;

enum { ROW_PENDING = 0, ROW_DONE, ROW_ERROR };

typedef struct {
    const char *model_path, *inputs_path, *output;
    bool resume, keep_going, progress_flag, jsonl, multi_vector;
    long shard_i, shard_n;
    int threads, num_crops;
} batch_options;

typedef struct {
    batch_options o;
    size_t first_line;         /* global 0-based line number of row 0 */
    size_t n, dim;
    batch_row *rows;
    abc_input *inputs;
    unsigned char *state;      /* ROW_* per row */
    unsigned char *started;    /* "S" seen in the log of an earlier run */
    char **errors;             /* message per ROW_ERROR row */
    char *partial_path, *log_path, *ids_path, *errors_path;
    int part_fd, log_fd;
    int64_t data_offset;
    /* progress and the first fatal error (under the scheduler's lock) */
    size_t total_done, done_now, n_errors;
    double t0, last_print;
    bool show_progress, tty;
    bool fatal;
    size_t fatal_row;
    abc_status fatal_status;
    char fatal_message[512];
    bool log_failed;
} batch;

static void print_batch_usage(FILE *f) {
    fputs("usage: abc embed -m MODEL --batch INPUTS.jsonl -o OUT.npy|OUT.jsonl [--resume] [--shard I/N]\n"
          "                 [--keep-going] [--threads T] [--progress] [--num-crops N] [--multi-vector]\n"
          "\n"
          "  --batch FILE      one JSON object per line: \"id\", \"image\" (relative paths resolve\n"
          "                    against FILE's folder), \"text\", \"prompt\", \"role\"\n"
          "                    (query|candidate|auto), \"instruction\" (gme), \"task\" (task adapters,\n"
          "                    e.g. jina-v4), \"dim\" (Matryoshka, like --dim: the row's first dim values,\n"
          "                    normalised again, the rest of an .npy row zero); '-' reads standard input\n"
          "  -o OUT.npy        float32 [N,D], rows in input order, OUT.ids (one id per line; the\n"
          "                    0-based line number where a line has no id) and OUT.meta.json (the\n"
          "                    rows' dim and task, checked by abc search). OUT.jsonl: one\n"
          "                    {\"id\":...,\"embedding\":[...]} per line instead\n"
          "                    A multi-vector model (colqwen2): OUT.npy float32 [ΣT,D], every input's token\n"
          "                    vectors in input order, and OUT.offsets.npy int64 [N+1] (input i: rows\n"
          "                    offsets[i]..offsets[i+1]); no --resume, --shard, --keep-going or .jsonl\n"
          "  --multi-vector    that token-vector output for a model that has both (jina-v4)\n"
          "  --resume          continue an interrupted run with the same inputs and output\n"
          "  --shard I/N       embed only the I-th of N contiguous blocks of lines (0 <= I < N)\n"
          "  --keep-going      a bad line gets a NaN row and a line in OUT.errors instead of\n"
          "                    stopping the run\n"
          "  --threads T       worker threads (default: all online CPUs)\n"
          "  --progress        print progress even when stderr is not a terminal\n",
          f);
}

static int parse_batch_args(int argc, char **argv, batch_options *o) {
    memset(o, 0, sizeof *o);
    o->shard_n = 1;
    for (int k = 1; k < argc; k++) /* "abc embed --batch --help" */
        if (strcmp(argv[k], "-h") == 0 || strcmp(argv[k], "--help") == 0) {
            print_batch_usage(stdout);
            return -1;
        }
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        const char *arg = argv[c.i], *v = NULL;
        if (cli_take(&c, "--model", "-m", &o->model_path)) {
        } else if (cli_take(&c, "--batch", NULL, &o->inputs_path)) {
        } else if (cli_take(&c, "--output", "-o", &o->output)) {
        } else if (strcmp(arg, "--resume") == 0) {
            o->resume = true;
        } else if (strcmp(arg, "--keep-going") == 0) {
            o->keep_going = true;
        } else if (strcmp(arg, "--progress") == 0) {
            o->progress_flag = true;
        } else if (strcmp(arg, "--multi-vector") == 0) {
            o->multi_vector = true;
        } else if (cli_take(&c, "--shard", NULL, &v)) {
            if (c.bad) return CLI_EXIT_USAGE;
            const char *slash = strchr(v, '/');
            char head[32];
            size_t hn = slash ? (size_t)(slash - v) : 0;
            if (!slash || hn == 0 || hn >= sizeof head) return cli_usage_error("--shard must be I/N, not '%s'", v);
            memcpy(head, v, hn);
            head[hn] = 0;
            if (!cli_parse_long(slash + 1, 1, 1000000, &o->shard_n) ||
                !cli_parse_long(head, 0, o->shard_n - 1, &o->shard_i))
                return cli_usage_error("--shard must be I/N with 0 <= I < N <= 1000000, not '%s'", v);
        } else if (cli_take(&c, "--threads", "-t", &v)) {
            long n;
            if (c.bad) return CLI_EXIT_USAGE;
            if (!cli_parse_long(v, 1, 1024, &n))
                return cli_usage_error("--threads must be an integer from 1 to 1024, not '%s'", v);
            o->threads = (int)n;
        } else if (cli_take(&c, "--num-crops", NULL, &v)) {
            long n;
            if (c.bad) return CLI_EXIT_USAGE;
            if (!cli_parse_long(v, 1, 4096, &n))
                return cli_usage_error("--num-crops must be an integer from 1 to 4096, not '%s'", v);
            o->num_crops = (int)n;
        } else {
            return cli_usage_error("embed --batch: unknown %s '%s'", arg[0] == '-' ? "option" : "argument", arg);
        }
        if (c.bad) return CLI_EXIT_USAGE;
    }
    if (!o->model_path) return cli_usage_error("embed: -m MODEL is required");
    if (!o->inputs_path) return cli_usage_error("embed: --batch needs a file of inputs");
    if (!o->output) return cli_usage_error("embed --batch: -o OUT.npy or -o OUT.jsonl is required");
    size_t n = strlen(o->output);
    o->jsonl = n > 6 && strcmp(o->output + n - 6, ".jsonl") == 0;
    return CLI_EXIT_OK;
}

/* ---- input lines ---- */

static char *dup_string(const json_value *v) {
    char *s = malloc(v->string_len + 1);
    if (s) memcpy(s, v->string, v->string_len + 1);
    return s;
}

static char *format_string(const char *fmt, ...) CLI_PRINTF(1, 2);
static char *format_string(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return strdup(buf);
}

/* A string field: absent or null → NULL; else a string without NUL bytes. Returns false (and sets
 * *error) when the field is malformed. */
static bool string_field(const json_value *obj, const char *key, char **out, char **error) {
    const json_value *v = json_get(obj, key);
    *out = NULL;
    if (!v || v->type == JSON_NULL) return true;
    if (v->type != JSON_STRING) {
        *error = format_string("\"%s\" must be a string", key);
        return false;
    }
    if (strlen(v->string) != v->string_len) {
        *error = format_string("\"%s\" contains a NUL character", key);
        return false;
    }
    *out = dup_string(v);
    if (!*out) *error = format_string("out of memory");
    return *out != NULL;
}

/* Fills `row` from one input line; a problem with the line goes to row->error (never fatal). */
static void parse_row(const char *line, size_t len, size_t line_no, const char *dir, batch_row *row) {
    memset(row, 0, sizeof *row);
    row->role = ABC_ROLE_AUTO;
    char err[256] = "";
    json_value *v = NULL;
    if (len == 0) {
        row->error = format_string("empty line");
    } else if (!(v = json_parse(line, len, err, sizeof err))) {
        row->error = format_string("not valid JSON: %s", err);
    } else if (v->type != JSON_OBJECT) {
        row->error = format_string("not a JSON object");
    } else {
        char *image = NULL, *role = NULL;
        const json_value *id = json_get(v, "id");
        bool ok = true;
        /* the id first, so that a line with a bad field is still reported under its id */
        if (id && id->type == JSON_STRING) {
            for (size_t k = 0; k < id->string_len && ok; k++)
                if ((unsigned char)id->string[k] < 0x20) {
                    row->error = format_string("\"id\" contains a control character");
                    ok = false;
                }
            if (ok) row->id = dup_string(id);
        } else if (id && id->type == JSON_NUMBER) {
            row->id = format_string("%.17g", id->number);
        } else if (id && id->type != JSON_NULL) {
            row->error = format_string("\"id\" must be a string or a number");
            ok = false;
        }
        ok = ok && string_field(v, "image", &image, &row->error) && string_field(v, "text", &row->text, &row->error) &&
             string_field(v, "prompt", &row->prompt, &row->error) && string_field(v, "role", &role, &row->error) &&
             string_field(v, "instruction", &row->instruction, &row->error) &&
             string_field(v, "task", &row->task, &row->error);
        const json_value *dim = ok ? json_get(v, "dim") : NULL;
        if (dim && (dim->type != JSON_NUMBER || !(dim->number >= 1 && dim->number <= 1 << 20) ||
                    dim->number != (double)(int)dim->number)) {
            row->error = format_string("\"dim\" must be a positive integer");
            ok = false;
        } else if (dim) {
            row->dim = (int)dim->number;
        }
        if (ok && role && !cli_parse_role(role, &row->role)) {
            row->error = format_string("\"role\" must be query, candidate or auto, not '%.100s'", role);
            ok = false;
        }
        if (ok && !image && !row->text && !row->prompt) {
            row->error = format_string("nothing to embed: give \"image\", \"text\" or \"prompt\"");
            ok = false;
        }
        if (ok && image && !*image) {
            row->error = format_string("\"image\" is empty");
            ok = false;
        }
        if (ok && image) row->image = cli_resolve_path(dir, image);
        free(image);
        free(role);
    }
    json_free(v);
    if (!row->id) row->id = format_string("%zu", line_no);
}

static void free_rows(batch *b) {
    for (size_t k = 0; b->rows && k < b->n; k++) {
        free(b->rows[k].id);
        free(b->rows[k].image);
        free(b->rows[k].text);
        free(b->rows[k].prompt);
        free(b->rows[k].instruction);
        free(b->rows[k].task);
        free(b->rows[k].error);
    }
    for (size_t k = 0; b->errors && k < b->n; k++) free(b->errors[k]);
    free(b->rows);
    free(b->inputs);
    free(b->state);
    free(b->started);
    free(b->errors);
}

/* ---- the job's identity (FNV-1a 64) ---- */

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t k = 0; k < n; k++) h = (h ^ p[k]) * 1099511628211ull;
    return h;
}

static uint64_t job_key(const batch *b, const abc_model *model, char **lines, size_t *lens) {
    uint64_t h = 14695981039346656037ull;
    struct stat st;
    int64_t size = stat(b->o.model_path, &st) == 0 ? (int64_t)st.st_size : -1;
    const char *desc = abc_model_description(model), *preset = abc_model_preset(model);
    h = fnv(h, "abc-batch-1", 11);
    h = fnv(h, &size, sizeof size);
    h = fnv(h, desc, strlen(desc) + 1);
    h = fnv(h, preset, strlen(preset) + 1);
    h = fnv(h, &b->dim, sizeof b->dim);
    h = fnv(h, &b->first_line, sizeof b->first_line);
    h = fnv(h, &b->n, sizeof b->n);
    for (size_t k = 0; k < b->n; k++) {
        h = fnv(h, lines[k], lens[k]);
        h = fnv(h, "\n", 1);
        /* the resolved image path: the same line read from another folder is another job */
        if (b->rows[k].image) h = fnv(h, b->rows[k].image, strlen(b->rows[k].image));
    }
    return h;
}

/* ---- files ---- */

static char *with_suffix(const char *base, size_t base_len, const char *suffix) {
    size_t sn = strlen(suffix);
    char *s = malloc(base_len + sn + 1);
    if (!s) return NULL;
    memcpy(s, base, base_len);
    memcpy(s + base_len, suffix, sn + 1);
    return s;
}

static bool write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool pwrite_all(int fd, const void *data, size_t n, int64_t off) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return true;
}

/* The .npy header for float32 [rows, dim] in host byte order, padded so the data starts at a
 * multiple of 64 bytes. Returns its length. */
static size_t npy_header(char *buf, size_t cap, size_t rows, size_t dim) {
    const uint16_t one = 1;
    const char order = *(const unsigned char *)&one ? '<' : '>';
    char dict[256];
    int dn = snprintf(dict, sizeof dict, "{'descr': '%cf4', 'fortran_order': False, 'shape': (%zu, %zu), }", order,
                      rows, dim);
    size_t total = (10 + (size_t)dn + 1 + 63) / 64 * 64;
    if (total > cap) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = total - 10;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, (size_t)dn);
    buf[total - 1] = '\n';
    return total;
}

static int create_partial(batch *b) {
    char header[512];
    size_t hn = npy_header(header, sizeof header, b->n, b->dim);
    b->part_fd = open(b->partial_path, O_RDWR | O_CREAT | O_TRUNC, 0666);
    if (b->part_fd < 0)
        return cli_report(ABC_ERR_IO, "cannot create '%s': %s", b->partial_path, strerror(errno));
    b->data_offset = (int64_t)hn;
    if (!write_all(b->part_fd, header, hn) || ftruncate(b->part_fd, (off_t)((int64_t)hn + (int64_t)b->n * (int64_t)b->dim * 4)) != 0)
        return cli_report(ABC_ERR_IO, "cannot write '%s': %s", b->partial_path, strerror(errno));
    return CLI_EXIT_OK;
}

/* Reads the log of an earlier run. Returns 1 when it belongs to this job and the partial file is
 * intact (b->state filled), 0 when there is nothing to resume, -1 (reported) on a mismatch. */
static int load_log(batch *b, const char *header) {
    char *data = NULL;
    size_t size = 0;
    char err[512];
    struct stat st;
    if (stat(b->log_path, &st) != 0) return 0;
    if (cli_read_file(b->log_path, &data, &size, err, sizeof err) != 0) {
        cli_report(ABC_ERR_IO, "%s", err);
        return -1;
    }
    size_t hn = strlen(header);
    if (size < hn || memcmp(data, header, hn) != 0) {
        free(data);
        cli_report(ABC_ERR_INVALID_ARG,
                   "cannot resume: '%s' belongs to another job (other inputs, shard or model); run again "
                   "without --resume to start over",
                   b->log_path);
        return -1;
    }
    char hdr[512];
    size_t want = npy_header(hdr, sizeof hdr, b->n, b->dim);
    b->part_fd = open(b->partial_path, O_RDWR);
    bool intact = b->part_fd >= 0 && fstat(b->part_fd, &st) == 0 &&
                  (uint64_t)st.st_size == want + (uint64_t)b->n * b->dim * 4;
    char got[512];
    intact = intact && pread(b->part_fd, got, want, 0) == (ssize_t)want && memcmp(got, hdr, want) == 0;
    if (!intact) {
        free(data);
        if (b->part_fd >= 0) close(b->part_fd);
        b->part_fd = -1;
        return 0;
    }
    b->data_offset = (int64_t)want;
    size_t pos = hn, valid = hn;
    while (pos < size) {
        char *nl = memchr(data + pos, '\n', size - pos);
        if (!nl) break; /* torn last line: its row is recomputed */
        *nl = 0;
        char *line = data + pos, *end;
        unsigned long long row = strtoull(line + 2, &end, 10);
        if ((line[0] == 'D' || line[0] == 'E' || line[0] == 'S') && line[1] == ' ' && end != line + 2 && row < b->n) {
            if (line[0] == 'S') {
                b->started[row] = 1;
            } else if (line[0] == 'D') {
                b->state[row] = ROW_DONE;
            } else if (b->o.keep_going && *end == ' ') {
                b->state[row] = ROW_ERROR;
                free(b->errors[row]);
                b->errors[row] = strdup(end + 1);
            }
        }
        pos = (size_t)(nl - data) + 1;
        valid = pos;
    }
    free(data);
    b->log_fd = open(b->log_path, O_WRONLY | O_APPEND);
    if (b->log_fd < 0 || ftruncate(b->log_fd, (off_t)valid) != 0) {
        cli_report(ABC_ERR_IO, "cannot reopen '%s': %s", b->log_path, strerror(errno));
        return -1;
    }
    return 1;
}

/* ---- scheduler callbacks (serialised by its lock, except store) ---- */

static void log_line(batch *b, const char *line) {
    if (!b->log_failed && !write_all(b->log_fd, line, strlen(line))) b->log_failed = true;
}

static void on_start(void *user, size_t index) {
    batch *b = user;
    char line[64];
    snprintf(line, sizeof line, "S %zu\n", index);
    log_line(b, line);
}

static bool on_store(void *user, size_t index, const float *row, char *err, size_t errlen) {
    batch *b = user;
    if (pwrite_all(b->part_fd, row, b->dim * 4, b->data_offset + (int64_t)index * (int64_t)b->dim * 4)) return true;
    snprintf(err, errlen, "cannot write '%s': %s", b->partial_path, strerror(errno));
    return false;
}

static void format_eta(char *buf, size_t n, double seconds) {
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

static void print_progress(batch *b, bool final) {
    double now = cli_now();
    if (!final && now - b->last_print < (b->tty ? 0.25 : 1.0)) return;
    b->last_print = now;
    double elapsed = now - b->t0, rate = elapsed > 0 ? (double)b->done_now / elapsed : 0;
    char eta[32];
    format_eta(eta, sizeof eta, rate > 0 ? (double)(b->n - b->total_done) / rate : -1);
    fprintf(stderr, "%sabc: %zu/%zu inputs, %.2f inputs/s, ETA %s", b->tty ? "\r" : "", b->total_done, b->n,
            rate, eta);
    if (b->n_errors) fprintf(stderr, ", %zu failed", b->n_errors);
    fputs(b->tty ? (final ? "\033[K\n" : "\033[K") : "\n", stderr);
    fflush(stderr);
}

static bool on_done(void *user, size_t index, abc_status st, const char *message) {
    batch *b = user;
    char line[700];
    if (st != ABC_OK && !b->o.keep_going) {
        if (!b->fatal || index < b->fatal_row) {
            b->fatal = true;
            b->fatal_row = index;
            b->fatal_status = st;
            snprintf(b->fatal_message, sizeof b->fatal_message, "%s", message);
        }
        return false;
    }
    if (st != ABC_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", abc_status_string(st), message);
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
        b->state[index] = ROW_ERROR;
        free(b->errors[index]);
        b->errors[index] = strdup(msg);
        b->n_errors++;
        snprintf(line, sizeof line, "E %zu %s\n", index, msg);
    } else {
        b->state[index] = ROW_DONE;
        snprintf(line, sizeof line, "D %zu\n", index);
    }
    log_line(b, line);
    b->total_done++;
    b->done_now++;
    if (b->show_progress) print_progress(b, false);
    return !b->log_failed;
}

/* ---- finishing ---- */

static int write_ids_and_errors(batch *b) {
    char err[512];
    size_t cap = 1, len = 0;
    for (size_t k = 0; k < b->n; k++) cap += strlen(b->rows[k].id) + 1;
    char *buf = malloc(cap);
    if (!buf) return cli_report(ABC_ERR_NOMEM, "out of memory writing ids");
    if (!b->o.jsonl) {
        for (size_t k = 0; k < b->n; k++) len += (size_t)sprintf(buf + len, "%s\n", b->rows[k].id);
        if (cli_write_file_atomic(b->ids_path, buf, len, err, sizeof err) != 0) {
            free(buf);
            return cli_report(ABC_ERR_IO, "%s", err);
        }
    }
    free(buf);
    if (!b->o.keep_going) return CLI_EXIT_OK;
    /* OUT.errors: "LINE\tID\tMESSAGE" per bad row, LINE 1-based as in the messages of a stopped run */
    size_t ecap = 1;
    for (size_t k = 0; k < b->n; k++)
        if (b->state[k] == ROW_ERROR) ecap += strlen(b->rows[k].id) + strlen(b->errors[k] ? b->errors[k] : "") + 32;
    char *ebuf = malloc(ecap);
    if (!ebuf) return cli_report(ABC_ERR_NOMEM, "out of memory writing errors");
    len = 0;
    for (size_t k = 0; k < b->n; k++)
        if (b->state[k] == ROW_ERROR)
            len += (size_t)sprintf(ebuf + len, "%zu\t%s\t%s\n", b->first_line + k + 1, b->rows[k].id,
                                   b->errors[k] ? b->errors[k] : "");
    int rc = cli_write_file_atomic(b->errors_path, ebuf, len, err, sizeof err);
    free(ebuf);
    return rc == 0 ? CLI_EXIT_OK : cli_report(ABC_ERR_IO, "%s", err);
}

static int write_jsonl(batch *b) {
    size_t n = strlen(b->o.output);
    char *tmp = with_suffix(b->o.output, n, ".tmp");
    float *row = malloc(b->dim * sizeof *row);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    if (!tmp || !row || !f) {
        int rc = cli_report(ABC_ERR_IO, "cannot create '%s': %s", tmp ? tmp : b->o.output, strerror(errno));
        free(tmp);
        free(row);
        return rc;
    }
    bool ok = true;
    for (size_t k = 0; k < b->n && ok; k++) {
        ok = pread(b->part_fd, row, b->dim * 4, (off_t)(b->data_offset + (int64_t)k * (int64_t)b->dim * 4)) ==
             (ssize_t)(b->dim * 4);
        fputs("{\"id\":", f);
        cli_json_string(f, b->rows[k].id, strlen(b->rows[k].id));
        if (b->state[k] == ROW_ERROR) {
            fputs(",\"embedding\":null}\n", f);
            continue;
        }
        fputs(",\"embedding\":[", f);
        const size_t width = b->rows[k].dim > 0 && (size_t)b->rows[k].dim < b->dim ? (size_t)b->rows[k].dim : b->dim;
        for (size_t d = 0; d < width; d++) {
            if (d) fputc(',', f);
            cli_json_float(f, row[d]);
        }
        fputs("]}\n", f);
    }
    ok = ok && fflush(f) == 0 && !ferror(f);
    ok = (fclose(f) == 0) && ok;
    int rc = CLI_EXIT_OK;
    if (!ok || rename(tmp, b->o.output) != 0) {
        rc = cli_report(ABC_ERR_IO, "cannot write '%s': %s", b->o.output, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    free(row);
    return rc;
}

/* ---- multi-vector models ----
 * Each input gives [T_i, D] token vectors: OUT.npy is float32 [ΣT_i, D], the inputs' rows one after
 * another in input order, and OUT.offsets.npy int64 [N+1] where input i's rows are
 * offsets[i] .. offsets[i+1]. Everything is computed in memory first; then OUT.ids, OUT.offsets.npy and
 * last OUT.npy are each written to a temporary name and renamed, so OUT.npy exists only when the
 * whole set is there. */
static int batch_multi(batch *b, const abc_model *model) {
    if (b->o.resume || b->o.shard_n != 1 || b->o.keep_going || b->o.jsonl)
        return cli_usage_error("embed --batch: a multi-vector model writes OUT.npy + OUT.offsets.npy; --resume, "
                               "--shard, --keep-going and .jsonl output are not supported for it");
    const size_t dim = (size_t)abc_model_multi_vector_dim(model);
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = b->o.threads;
    abc_context *ctx = NULL;
    abc_error aerr = {0};
    abc_status st = abc_context_new(model, &cp, &ctx, &aerr);
    if (st != ABC_OK) return cli_report(st, "%s", aerr.message);
    int64_t *offsets = calloc(b->n + 1, sizeof *offsets);
    float *vecs = NULL;
    size_t cap = 0, total = 0;
    int rc = offsets ? CLI_EXIT_OK : cli_report(ABC_ERR_NOMEM, "out of memory for %zu inputs", b->n);
    for (size_t k = 0; k < b->n && rc == CLI_EXIT_OK; k++) {
        size_t n = 0;
        if (b->inputs[k].dim) {
            fprintf(stderr, "abc: error: line %zu: \"dim\" applies to the single vector, not to token vectors\n",
                    b->first_line + k + 1);
            rc = CLI_EXIT_FAILED;
            break;
        }
        st = abc_embed_multi(ctx, &b->inputs[k], NULL, 0, &n);
        if (st == ABC_OK && (total + n) * dim > cap) {
            size_t want = (total + n) * dim * 2;
            float *grown = realloc(vecs, want * sizeof *vecs);
            if (!grown) {
                rc = cli_report(ABC_ERR_NOMEM, "out of memory for %zu token vectors", total + n);
                break;
            }
            vecs = grown;
            cap = want;
        }
        if (st == ABC_OK) st = abc_embed_multi(ctx, &b->inputs[k], vecs + total * dim, cap - total * dim, &n);
        if (st != ABC_OK) {
            fprintf(stderr, "abc: error: line %zu: %s: %s\n", b->first_line + k + 1, abc_status_string(st),
                    abc_context_errmsg(ctx));
            rc = CLI_EXIT_FAILED;
            break;
        }
        total += n;
        offsets[k + 1] = (int64_t)total;
        if (b->show_progress) fprintf(stderr, "\rabc: %zu/%zu inputs, %zu token vectors", k + 1, b->n, total);
    }
    if (b->show_progress) fputc('\n', stderr);
    char err[512];
    char *offsets_path = cli_companion_path(b->o.output, ".offsets.npy");
    if (rc == CLI_EXIT_OK && !offsets_path) rc = cli_report(ABC_ERR_NOMEM, "out of memory");
    if (rc == CLI_EXIT_OK) rc = write_ids_and_errors(b);
    if (rc == CLI_EXIT_OK && cli_write_index_meta(b->o.output, model, b->inputs, b->n, true, err, sizeof err) != 0)
        rc = cli_report(ABC_ERR_IO, "%s", err);
    const int64_t oshape[1] = {(int64_t)b->n + 1}, vshape[2] = {(int64_t)total, (int64_t)dim};
    if (rc == CLI_EXIT_OK && (npy_write(offsets_path, NPY_I64, 1, oshape, offsets, err, sizeof err) != 0 ||
                              npy_write(b->o.output, NPY_F32, 2, vshape, vecs ? (const void *)vecs : (const void *)"",
                                        err, sizeof err) != 0))
        rc = cli_report(ABC_ERR_IO, "%s", err);
    free(offsets_path);
    free(offsets);
    free(vecs);
    abc_context_free(ctx);
    return rc;
}

/* ---- the command ---- */

static int setup_paths(batch *b) {
    const char *out = b->o.output;
    size_t n = strlen(out), base = n;
    if (b->o.jsonl) base = n - 6;
    else if (n > 4 && strcmp(out + n - 4, ".npy") == 0) base = n - 4;
    b->partial_path = with_suffix(out, n, ".partial");
    b->log_path = with_suffix(out, n, ".progress");
    b->ids_path = with_suffix(out, base, ".ids");
    b->errors_path = with_suffix(out, base, ".errors");
    if (!b->partial_path || !b->log_path || !b->ids_path || !b->errors_path)
        return cli_report(ABC_ERR_NOMEM, "out of memory");
    return CLI_EXIT_OK;
}

int cmd_embed_batch(int argc, char **argv) {
    batch b;
    memset(&b, 0, sizeof b);
    b.part_fd = b.log_fd = -1;
    int rc = parse_batch_args(argc, argv, &b.o);
    if (rc < 0) return CLI_EXIT_OK;
    if (rc != CLI_EXIT_OK) return rc;

    char err[512];
    char *data = NULL, **lines = NULL, *dir = NULL;
    size_t size = 0, n_lines = 0, *lens = NULL;
    abc_model *model = NULL;
    size_t *todo = NULL;
    if ((rc = setup_paths(&b)) != CLI_EXIT_OK) goto done;
    if (cli_read_file(b.o.inputs_path, &data, &size, err, sizeof err) != 0) {
        rc = cli_report(ABC_ERR_IO, "%s", err);
        goto done;
    }
    if (cli_split_lines(data, size, &lines, &lens, &n_lines) != 0 ||
        !(dir = strcmp(b.o.inputs_path, "-") == 0 ? strdup("") : cli_dirname(b.o.inputs_path))) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory reading '%s'", b.o.inputs_path);
        goto done;
    }
    /* shard I of N: lines [I·total/N, (I+1)·total/N), so the N outputs concatenate to the whole run */
    b.first_line = (size_t)((uint64_t)b.o.shard_i * n_lines / (uint64_t)b.o.shard_n);
    b.n = (size_t)((uint64_t)(b.o.shard_i + 1) * n_lines / (uint64_t)b.o.shard_n) - b.first_line;

    abc_error aerr = {0};
    abc_model_params mp = abc_model_default_params();
    mp.num_crops = b.o.num_crops;
    abc_status st = abc_model_load(b.o.model_path, &mp, &model, &aerr);
    if (st != ABC_OK) {
        rc = cli_report(st, "%s", aerr.message);
        goto done;
    }
    b.dim = (size_t)abc_model_embedding_dim(model);

    size_t alloc = b.n ? b.n : 1;
    b.rows = calloc(alloc, sizeof *b.rows);
    b.inputs = calloc(alloc, sizeof *b.inputs);
    b.state = calloc(alloc, 1);
    b.started = calloc(alloc, 1);
    b.errors = calloc(alloc, sizeof *b.errors);
    todo = malloc(alloc * sizeof *todo);
    if (!b.rows || !b.inputs || !b.state || !b.started || !b.errors || !todo) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory for %zu inputs", b.n);
        goto done;
    }
    for (size_t k = 0; k < b.n; k++) {
        size_t line_no = b.first_line + k;
        batch_row *r = &b.rows[k];
        parse_row(lines[line_no], lens[line_no], line_no, dir, r);
        if (!r->id) {
            rc = cli_report(ABC_ERR_NOMEM, "out of memory reading line %zu", line_no + 1);
            goto done;
        }
        if (r->error && !b.o.keep_going) {
            fprintf(stderr, "abc: error: line %zu: %s\n", line_no + 1, r->error);
            rc = CLI_EXIT_FAILED;
            goto done;
        }
        abc_input in = abc_input_default();
        in.image_path = r->image;
        in.text = r->text;
        in.prompt = r->prompt;
        in.instruction = r->instruction;
        in.task = r->task;
        in.dim = r->dim;
        in.role = r->role;
        b.inputs[k] = in;
    }
    if (b.o.multi_vector && abc_model_multi_vector_dim(model) == 0) {
        rc = cli_usage_error("--multi-vector: '%s' has no multi-vector output", b.o.model_path);
        goto done;
    }
    if ((b.dim == 0 || b.o.multi_vector) && abc_model_multi_vector_dim(model) > 0) {
        b.show_progress = b.o.progress_flag || isatty(STDERR_FILENO);
        rc = batch_multi(&b, model);
        goto done;
    }

    char header[128];
    snprintf(header, sizeof header, "abc-batch 1 %016" PRIx64 " %zu %zu\n",
             job_key(&b, model, lines + b.first_line, lens + b.first_line), b.n, b.dim);
    int resumed = b.o.resume ? load_log(&b, header) : 0;
    if (resumed < 0) {
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    if (!resumed) {
        memset(b.state, 0, alloc);
        memset(b.started, 0, alloc);
        if ((rc = create_partial(&b)) != CLI_EXIT_OK) goto done;
        b.log_fd = open(b.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0666);
        if (b.log_fd < 0 || !write_all(b.log_fd, header, strlen(header))) {
            rc = cli_report(ABC_ERR_IO, "cannot write '%s': %s", b.log_path, strerror(errno));
            goto done;
        }
    }

    /* rows whose line is bad are errors without running anything (only with --keep-going here) */
    size_t n_todo = 0, n_done = 0, n_inflight = 0;
    for (size_t k = 0; k < b.n; k++) {
        if (b.state[k] == ROW_PENDING && b.rows[k].error) {
            float *nan_row = malloc(b.dim * sizeof *nan_row);
            if (!nan_row) {
                rc = cli_report(ABC_ERR_NOMEM, "out of memory");
                goto done;
            }
            for (size_t d = 0; d < b.dim; d++) nan_row[d] = NAN;
            bool ok = on_store(&b, k, nan_row, err, sizeof err);
            free(nan_row);
            if (!ok) {
                rc = cli_report(ABC_ERR_IO, "%s", err);
                goto done;
            }
            b.state[k] = ROW_ERROR;
            b.errors[k] = strdup(b.rows[k].error);
            char line[600];
            snprintf(line, sizeof line, "E %zu %.500s\n", k, b.rows[k].error);
            log_line(&b, line);
        }
        if (b.state[k] != ROW_PENDING) {
            n_done++;
            b.n_errors += b.state[k] == ROW_ERROR;
        } else {
            n_inflight += b.started[k];
            todo[n_todo++] = k;
        }
    }
    if (resumed)
        fprintf(stderr,
                "abc: resuming '%s': %zu of %zu rows already done; %zu were in flight when it stopped "
                "(recomputed); %zu to compute in all\n",
                b.o.output, n_done, b.n, n_inflight, n_todo);
    b.total_done = n_done;
    b.tty = isatty(STDERR_FILENO) != 0;
    b.show_progress = b.tty || b.o.progress_flag;
    b.t0 = b.last_print = cli_now();
    b.last_print -= 10;

    cli_embed_job job = {model, b.o.threads, b.inputs, todo, n_todo, NULL, on_store, on_start, on_done, &b};
    rc = cli_embed_many(&job);
    if (b.show_progress && rc == CLI_EXIT_OK) print_progress(&b, true);
    if (rc != CLI_EXIT_OK) goto done;
    if (b.fatal) {
        fprintf(stderr, "abc: error: line %zu: %s: %s\n", b.first_line + b.fatal_row + 1,
                abc_status_string(b.fatal_status), b.fatal_message);
        rc = CLI_EXIT_FAILED;
        goto done;
    }
    if (b.log_failed) {
        rc = cli_report(ABC_ERR_IO, "cannot write '%s'", b.log_path);
        goto done;
    }
    if ((rc = write_ids_and_errors(&b)) != CLI_EXIT_OK) goto done;
    /* OUT.meta.json (the rows' dim and task, which abc search checks its query against) before OUT.npy */
    if (!b.o.jsonl && cli_write_index_meta(b.o.output, model, b.inputs, b.n, false, err, sizeof err) != 0) {
        rc = cli_report(ABC_ERR_IO, "%s", err);
        goto done;
    }
    if (b.o.jsonl) {
        if ((rc = write_jsonl(&b)) != CLI_EXIT_OK) goto done;
        unlink(b.partial_path);
    } else if (close(b.part_fd) != 0 || (b.part_fd = -1, rename(b.partial_path, b.o.output) != 0)) {
        rc = cli_report(ABC_ERR_IO, "cannot write '%s': %s", b.o.output, strerror(errno));
        goto done;
    }
    unlink(b.log_path);
    if (b.n_errors)
        fprintf(stderr, "abc: %zu of %zu inputs failed (NaN rows), listed in '%s'\n", b.n_errors, b.n,
                b.errors_path);

done:
    if (b.part_fd >= 0) close(b.part_fd);
    if (b.log_fd >= 0) close(b.log_fd);
    free_rows(&b);
    free(todo);
    abc_model_free(model);
    free(data);
    free(lines);
    free(lens);
    free(dir);
    free(b.partial_path);
    free(b.log_path);
    free(b.ids_path);
    free(b.errors_path);
    return rc;
}
