/* search.c — `abc search`: exact top-k by dot product over the rows of a float32 .npy matrix (the
 * output of `abc embed --batch`), memory-mapped, all threads, a SIMD dot product (README "Collections").
 *
 * The embeddings are L2-normalised, so the dot product is the cosine similarity. Rows that are NaN
 * (inputs that failed under --keep-going) never rank. Ties go to the lower row. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the dot products ----
 * GCC/clang vector extensions, no intrinsics: 4-float vectors map to one SSE or NEON register on every
 * x86-64 and ARM target; on x86 CPUs with AVX2 an 8-float version of the same code runs instead (chosen
 * once at run time). dot1 scores one query against a row, dot4 four queries against a row loaded once
 * (several queries per call share the row traffic). Both give each query exactly the same operations in
 * the same order (two vector accumulators, the same reduction and tail), so for a given CPU a score does
 * not depend on the thread count, the number of queries or how they are grouped. */
#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));

#define REDUCE_4(t) (((t)[0] + (t)[1]) + ((t)[2] + (t)[3]))
#define REDUCE_8(t) ((((t)[0] + (t)[1]) + ((t)[2] + (t)[3])) + (((t)[4] + (t)[5]) + ((t)[6] + (t)[7])))

#define DEFINE_DOTS(SUF, VT, W, ATTR, REDUCE)                                                                   \
    ATTR static float dot1_##SUF(const float *q, const float *row, size_t n) {                                \
        VT s0 = {0}, s1 = {0}, a, b, x, y;                                                                    \
        size_t k = 0;                                                                                         \
        for (; k + 2 * W <= n; k += 2 * W) {                                                                  \
            memcpy(&x, row + k, sizeof x), memcpy(&y, row + k + W, sizeof y);                                 \
            memcpy(&a, q + k, sizeof a), memcpy(&b, q + k + W, sizeof b);                                     \
            s0 += a * x, s1 += b * y;                                                                         \
        }                                                                                                     \
        for (; k + W <= n; k += W) memcpy(&x, row + k, sizeof x), memcpy(&a, q + k, sizeof a), s0 += a * x;  \
        VT t = s0 + s1;                                                                                       \
        float r = REDUCE(t);                                                                                  \
        for (; k < n; k++) r += q[k] * row[k];                                                                \
        return r;                                                                                             \
    }                                                                                                         \
    ATTR static void dot4_##SUF(const float *const *q, const float *row, size_t n, float *out) {              \
        VT s00 = {0}, s01 = {0}, s10 = {0}, s11 = {0}, s20 = {0}, s21 = {0}, s30 = {0}, s31 = {0}, a, b, x, y; \
        size_t k = 0;                                                                                         \
        for (; k + 2 * W <= n; k += 2 * W) {                                                                  \
            memcpy(&x, row + k, sizeof x), memcpy(&y, row + k + W, sizeof y);                                 \
            memcpy(&a, q[0] + k, sizeof a), memcpy(&b, q[0] + k + W, sizeof b), s00 += a * x, s01 += b * y;   \
            memcpy(&a, q[1] + k, sizeof a), memcpy(&b, q[1] + k + W, sizeof b), s10 += a * x, s11 += b * y;   \
            memcpy(&a, q[2] + k, sizeof a), memcpy(&b, q[2] + k + W, sizeof b), s20 += a * x, s21 += b * y;   \
            memcpy(&a, q[3] + k, sizeof a), memcpy(&b, q[3] + k + W, sizeof b), s30 += a * x, s31 += b * y;   \
        }                                                                                                     \
        for (; k + W <= n; k += W) {                                                                          \
            memcpy(&x, row + k, sizeof x);                                                                    \
            memcpy(&a, q[0] + k, sizeof a), s00 += a * x;                                                     \
            memcpy(&a, q[1] + k, sizeof a), s10 += a * x;                                                     \
            memcpy(&a, q[2] + k, sizeof a), s20 += a * x;                                                     \
            memcpy(&a, q[3] + k, sizeof a), s30 += a * x;                                                     \
        }                                                                                                     \
        VT t0 = s00 + s01, t1 = s10 + s11, t2 = s20 + s21, t3 = s30 + s31;                                    \
        float r[4] = {REDUCE(t0), REDUCE(t1), REDUCE(t2), REDUCE(t3)};                                        \
        for (int j = 0; j < 4; j++) {                                                                         \
            for (size_t m = k; m < n; m++) r[j] += q[j][m] * row[m];                                          \
            out[j] = r[j];                                                                                    \
        }                                                                                                     \
    }

DEFINE_DOTS(v4, v4f, 4, , REDUCE_4)
#if (defined(__x86_64__) || defined(__i386__)) && !defined(ABC_NO_SIMD)
#define SEARCH_AVX2 1
DEFINE_DOTS(v8, v8f, 8, __attribute__((target("avx2"))), REDUCE_8)
#endif
#define DOT1_PORTABLE dot1_v4
#define DOT4_PORTABLE dot4_v4
#else
/* other compilers: the same operations on plain arrays of 4 */
static float dot1_plain(const float *q, const float *row, size_t n) {
    float s0[4] = {0}, s1[4] = {0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 4; j++) s0[j] += q[k + j] * row[k + j], s1[j] += q[k + 4 + j] * row[k + 4 + j];
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; j++) s0[j] += q[k + j] * row[k + j];
    float t[4] = {s0[0] + s1[0], s0[1] + s1[1], s0[2] + s1[2], s0[3] + s1[3]};
    float r = (t[0] + t[1]) + (t[2] + t[3]);
    for (; k < n; k++) r += q[k] * row[k];
    return r;
}
static void dot4_plain(const float *const *q, const float *row, size_t n, float *out) {
    for (int j = 0; j < 4; j++) out[j] = dot1_plain(q[j], row, n);
}
#define DOT1_PORTABLE dot1_plain
#define DOT4_PORTABLE dot4_plain
#endif

typedef float (*dot1_fn)(const float *, const float *, size_t);
typedef void (*dot4_fn)(const float *const *, const float *, size_t, float *);

static void pick_dots(dot1_fn *d1, dot4_fn *d4) {
    *d1 = DOT1_PORTABLE;
    *d4 = DOT4_PORTABLE;
#ifdef SEARCH_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) *d1 = dot1_v8, *d4 = dot4_v8;
#endif
}

/* ---- the index ---- */

typedef struct {
    void *map;
    size_t map_size;
    const float *rows;
    size_t n, dim;
} index_file;

/* Maps a float32 C-order [N, D] .npy in host byte order. */
static int open_index(const char *path, index_file *ix) {
    memset(ix, 0, sizeof *ix);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = cli_report(ABC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return rc;
    }
    ix->map_size = (size_t)st.st_size;
    ix->map = ix->map_size ? mmap(NULL, ix->map_size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (ix->map == MAP_FAILED) {
        ix->map = NULL;
        return cli_report(ABC_ERR_IO, "cannot map '%s': %s", path, ix->map_size ? strerror(errno) : "empty file");
    }
    const unsigned char *p = ix->map;
    size_t hlen = 0, start = 0;
    if (ix->map_size >= 10 && memcmp(p, "\x93NUMPY", 6) == 0) {
        if (p[6] == 1) hlen = (size_t)p[8] | (size_t)p[9] << 8, start = 10;
        else if ((p[6] == 2 || p[6] == 3) && ix->map_size >= 12)
            hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24, start = 12;
    }
    if (!start || hlen > 65536 || start + hlen > ix->map_size)
        return cli_report(ABC_ERR_INVALID_ARG, "'%s' is not a .npy file", path);
    char header[65537];
    memcpy(header, p + start, hlen);
    header[hlen] = 0;
    const uint16_t one = 1;
    const char *want = *(const unsigned char *)&one ? "'<f4'" : "'>f4'";
    const char *shape = strstr(header, "'shape':");
    unsigned long long n = 0, d = 0;
    char close_paren = 0;
    if (!strstr(header, want) || !strstr(header, "'fortran_order': False") || !shape ||
        sscanf(shape + 8, " (%llu, %llu %c", &n, &d, &close_paren) != 3 || close_paren != ')' || d == 0)
        return cli_report(ABC_ERR_INVALID_ARG,
                          "'%s': the index must be a float32 matrix [N, D] in C order and this machine's byte "
                          "order (as abc embed --batch writes it)",
                          path);
    size_t offset = start + hlen;
    if (d > SIZE_MAX / 4 || n > (SIZE_MAX - offset) / (d * 4) || offset + n * d * 4 > ix->map_size)
        return cli_report(ABC_ERR_INVALID_ARG, "'%s' is truncated: %llu x %llu floats do not fit", path, n, d);
    if (offset % 4) return cli_report(ABC_ERR_INVALID_ARG, "'%s': the data is not 4-byte aligned", path);
    ix->rows = (const float *)(p + offset);
    ix->n = (size_t)n;
    ix->dim = (size_t)d;
    posix_madvise(ix->map, ix->map_size, POSIX_MADV_SEQUENTIAL);
    return CLI_EXIT_OK;
}

/* ---- top-k ---- */

typedef struct {
    float score;
    size_t row;
} hit;

static bool worse(hit a, hit b) { return a.score < b.score || (a.score == b.score && a.row > b.row); }

/* A min-heap of the k best so far: heap[0] is the worst kept. */
static void heap_push(hit *heap, size_t *n, size_t k, hit h) {
    if (*n < k) {
        size_t i = (*n)++;
        heap[i] = h;
        while (i > 0 && worse(heap[i], heap[(i - 1) / 2])) {
            hit t = heap[i];
            heap[i] = heap[(i - 1) / 2];
            heap[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!worse(heap[0], h)) return;
    heap[0] = h;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && worse(heap[l], heap[m])) m = l;
        if (r < *n && worse(heap[r], heap[m])) m = r;
        if (m == i) break;
        hit t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}

static int better_first(const void *a, const void *b) {
    const hit *x = a, *y = b;
    return worse(*y, *x) ? -1 : worse(*x, *y) ? 1 : 0;
}

typedef struct {
    const index_file *ix;
    const float *queries;
    size_t n_queries, k, lo, hi;
    dot1_fn dot1;
    dot4_fn dot4;
    hit *heaps;     /* n_queries × k */
    size_t *counts; /* per query */
} scan_task;

static void *scan(void *arg) {
    scan_task *t = arg;
    const size_t dim = t->ix->dim, block = 64;
    for (size_t r0 = t->lo; r0 < t->hi; r0 += block) {
        size_t r1 = r0 + block < t->hi ? r0 + block : t->hi;
        /* every query against a block of rows while it is in cache, four queries per row load */
        size_t q = 0;
        for (; q + 4 <= t->n_queries; q += 4) {
            const float *qs[4] = {t->queries + q * dim, t->queries + (q + 1) * dim, t->queries + (q + 2) * dim,
                                  t->queries + (q + 3) * dim};
            for (size_t r = r0; r < r1; r++) {
                float s[4];
                t->dot4(qs, t->ix->rows + r * dim, dim, s);
                for (int j = 0; j < 4; j++)
                    if (s[j] == s[j]) heap_push(t->heaps + (q + j) * t->k, &t->counts[q + j], t->k, (hit){s[j], r});
            }
        }
        for (; q < t->n_queries; q++) {
            const float *qv = t->queries + q * dim;
            for (size_t r = r0; r < r1; r++) {
                float s = t->dot1(qv, t->ix->rows + r * dim, dim);
                if (s == s) heap_push(t->heaps + q * t->k, &t->counts[q], t->k, (hit){s, r});
            }
        }
    }
    return NULL;
}

/* ---- ids ---- */

static int load_ids(const char *path, size_t n, char **data, char ***ids) {
    char err[512], **lines = NULL;
    size_t size = 0, count = 0, *lens = NULL;
    if (cli_read_file(path, data, &size, err, sizeof err) != 0) return cli_report(ABC_ERR_IO, "%s", err);
    if (cli_split_lines(*data, size, &lines, &lens, &count) != 0) return cli_report(ABC_ERR_NOMEM, "reading ids");
    free(lens);
    if (count != n) {
        free(lines);
        return cli_report(ABC_ERR_INVALID_ARG, "'%s' has %zu ids for %zu rows", path, count, n);
    }
    *ids = lines;
    return CLI_EXIT_OK;
}

/* Query q's best hits (sorted): one JSON list, or "RANK<TAB>SCORE<TAB>ID" lines (prefixed by q when
 * there are several queries). */
static void print_hits(size_t q, size_t n_queries, const hit *hits, size_t m, char **ids, bool json) {
    if (json) {
        printf("%s[", q ? "," : "");
        for (size_t j = 0; j < m; j++) {
            char num[32];
            const char *id = ids ? ids[hits[j].row] : (snprintf(num, sizeof num, "%zu", hits[j].row), num);
            printf("%s{\"rank\":%zu,\"id\":", j ? "," : "", j + 1);
            cli_json_string(stdout, id, strlen(id));
            fputs(",\"score\":", stdout);
            cli_json_float(stdout, hits[j].score);
            putchar('}');
        }
        putchar(']');
        return;
    }
    for (size_t j = 0; j < m; j++) {
        if (n_queries > 1) printf("%zu\t", q);
        printf("%zu\t%.9g\t", j + 1, (double)hits[j].score);
        if (ids) fputs(ids[hits[j].row], stdout);
        else printf("%zu", hits[j].row);
        putchar('\n');
    }
}

/* ---- multi-vector indexes (late interaction) ----
 * OUT.npy [ΣT, D] with OUT.offsets.npy [N+1] (abc embed --batch on a multi-vector model): document i is
 * rows offsets[i] .. offsets[i+1]. A query [Tq, D] scores each document by MaxSim, Σ over the query's
 * rows of the largest dot product with any of the document's rows (ColBERT / ColPali). */

/* OFFSETS int64 [N+1]: 0 first, never decreasing, ending at the index's row count. *n_docs = N. */
int cli_read_offsets(const char *path, size_t n_rows, int64_t **offsets, size_t *n_docs) {
    npy_array a = {0};
    char err[512];
    if (npy_read(path, &a, err, sizeof err) != 0) return cli_report(ABC_ERR_IO, "%s", err);
    bool ok = a.dtype == NPY_I64 && a.ndim == 1 && a.count >= 1;
    const int64_t *o = a.data;
    for (size_t i = 0; ok && i < a.count; i++)
        ok = i == 0 ? o[0] == 0 : o[i] >= o[i - 1];
    if (!ok || (uint64_t)o[a.count - 1] != (uint64_t)n_rows) {
        npy_free(&a);
        return cli_report(ABC_ERR_INVALID_ARG, "'%s' must be int64 [N+1] offsets from 0 up to the index's %zu rows",
                          path, n_rows);
    }
    *offsets = a.data;
    *n_docs = a.count - 1;
    return CLI_EXIT_OK;
}

/* MaxSim of query [nq][dim] against rows [n][dim]; an empty document scores 0 per query row, as the
 * zero padding of ColQwen2Processor.score_retrieval does; NaN when a row is NaN. */
float cli_maxsim(const float *query, size_t nq, const float *rows, size_t n, size_t dim) {
    dot1_fn dot1;
    dot4_fn dot4;
    pick_dots(&dot1, &dot4);
    float total = 0.0f;
    for (size_t i = 0; i < nq; i++) {
        float best = n ? -INFINITY : 0.0f;
        for (size_t j = 0; j < n; j++) {
            const float s = dot1(query + i * dim, rows + j * dim, dim);
            if (s != s) return s;
            if (s > best) best = s;
        }
        total += best;
    }
    return total;
}

/* OUT.npy's companion OUT<suffix> (a new string) when that file exists, else NULL. */
static char *sibling_file(const char *index_path, const char *suffix) {
    char *path = cli_companion_path(index_path, suffix);
    struct stat st;
    if (!path) return NULL;
    if (stat(path, &st) == 0) return path;
    free(path);
    return NULL;
}

/* The width an index's rows were embedded at, read from the data for an index without OUT.meta.json on a
 * file with Matryoshka dims: abc embed --batch leaves a truncated row zero after its dim, which a full
 * row (normalised, from a real model) never is. The smallest listed dim after which every row (NaN rows
 * of failed inputs aside) is zero, else the full width. */
static int index_matryoshka_dim(const index_file *ix, const int *dims, int n_dims) {
    size_t best = ix->dim;
    for (int k = 0; k < n_dims; k++) {
        const size_t d = (size_t)dims[k];
        if (d >= best) continue;
        bool zero = ix->n > 0;
        for (size_t r = 0; r < ix->n && zero; r++) {
            const float *row = ix->rows + r * ix->dim;
            if (isnan(row[0])) continue;
            for (size_t c = d; c < ix->dim && zero; c++) zero = row[c] == 0.0f;
        }
        if (zero) best = d;
    }
    return (int)best;
}

static void print_search_usage(FILE *f) {
    fputs("usage: abc search --index OUT.npy [--ids OUT.ids] -m MODEL [--image PATH] [--text TEXT]\n"
          "                  [--prompt RAW] [--role query|candidate|auto] [--task NAME] [--dim N] [-k K]\n"
          "                  [--json] [--threads T]\n"
          "       abc search --index OUT.npy [--ids OUT.ids] --query Q.npy [-k K] [--json] [--threads T]\n"
          "\n"
          "Prints the K rows of the index (float32 [N,D], e.g. from abc embed --batch) with the highest\n"
          "dot product with the query: 'RANK<TAB>SCORE<TAB>ID' per line, or with --json\n"
          "[{\"rank\":1,\"id\":\"...\",\"score\":0.83}, ...]. The query is embedded with -m (role auto:\n"
          "an image with a text is a query) or read from Q.npy ([D], or [Q,D] for Q queries: then each\n"
          "line starts with the query number and --json prints one list per query). Ids come from\n"
          "--ids, else OUT.ids next to the index when it exists, else the row numbers (from 0).\n"
          "Multi-vector index (a multi-vector model's abc embed --batch: OUT.npy [ΣT,D] with\n"
          "OUT.offsets.npy next to it, or --offsets): each document's score is MaxSim, the sum over\n"
          "the query's token vectors of the best dot product with the document's; the query is the\n"
          "model's token vectors, or Q.npy [Tq,D] (one query).\n"
          "  --task NAME   the query's task adapter (jina-v4; default: the file's), as the index's\n"
          "  --dim N       embed the query at Matryoshka dim N (the model's dims), as the index's rows\n"
          "                (its \"dim\"). The task and dim the index was embedded with are recorded in\n"
          "                OUT.meta.json by abc embed --batch; a query embedded otherwise is refused\n"
          "  -k K          how many rows (default 10)\n"
          "  --stats       print the scan time and queries/s on stderr\n",
          f);
}

int cmd_search(int argc, char **argv) {
    const char *index_path = NULL, *ids_path = NULL, *model_path = NULL, *image = NULL, *text = NULL;
    const char *prompt = NULL, *query_path = NULL, *v = NULL, *offsets_path = NULL, *task = NULL;
    abc_role role = ABC_ROLE_AUTO;
    long k = 10, threads = 0, dim = 0;
    bool json = false, stats = false;
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        const char *arg = argv[c.i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            print_search_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) json = true;
        else if (strcmp(arg, "--stats") == 0) stats = true;
        else if (cli_take(&c, "--index", NULL, &index_path)) {
        } else if (cli_take(&c, "--ids", NULL, &ids_path)) {
        } else if (cli_take(&c, "--offsets", NULL, &offsets_path)) {
        } else if (cli_take(&c, "--model", "-m", &model_path)) {
        } else if (cli_take(&c, "--image", NULL, &image)) {
        } else if (cli_take(&c, "--text", NULL, &text)) {
        } else if (cli_take(&c, "--prompt", NULL, &prompt)) {
        } else if (cli_take(&c, "--task", NULL, &task)) {
        } else if (cli_take(&c, "--query", NULL, &query_path)) {
        } else if (cli_take(&c, "--dim", NULL, &v)) {
            if (!c.bad && !cli_parse_long(v, 1, 1 << 20, &dim))
                return cli_usage_error("--dim must be a positive integer, not '%s'", v);
        } else if (cli_take(&c, "--role", NULL, &v)) {
            if (!c.bad && !cli_parse_role(v, &role))
                return cli_usage_error("--role must be query, candidate or auto, not '%s'", v);
        } else if (cli_take(&c, "-k", "--top-k", &v)) {
            if (!c.bad && !cli_parse_long(v, 1, 1000000, &k))
                return cli_usage_error("-k must be an integer from 1 to 1000000, not '%s'", v);
        } else if (cli_take(&c, "--threads", "-t", &v)) {
            if (!c.bad && !cli_parse_long(v, 1, 1024, &threads))
                return cli_usage_error("--threads must be an integer from 1 to 1024, not '%s'", v);
        } else {
            return cli_usage_error("search: unknown %s '%s'", arg[0] == '-' ? "option" : "argument", arg);
        }
        if (c.bad) return CLI_EXIT_USAGE;
    }
    if (!index_path) return cli_usage_error("search: --index OUT.npy is required");
    if (!query_path == !model_path) return cli_usage_error("search: give either -m MODEL (and the query) or --query Q.npy");
    if (model_path && !image && !text && !prompt)
        return cli_usage_error("search: nothing to embed as the query (give --image, --text or --prompt)");
    if (query_path && (image || text || prompt || task || dim))
        return cli_usage_error("search: --query cannot be combined with --image/--text/--prompt/--task/--dim");
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > 1024 ? 1024 : n;
    }

    index_file ix;
    int rc = open_index(index_path, &ix);
    float *queries = NULL;
    size_t n_queries = 1;
    char *ids_data = NULL, **ids = NULL, *default_ids = NULL;
    hit *heaps = NULL, *merged = NULL;
    size_t *counts = NULL;
    scan_task *tasks = NULL;
    pthread_t *tids = NULL;
    npy_array qa = {0};
    int64_t *offsets = NULL;
    size_t n_docs = 0, n_query_rows = 0;
    char *default_offsets = NULL;
    if (rc != CLI_EXIT_OK) goto done;
    if (!offsets_path) /* OUT.offsets.npy next to OUT.npy: a multi-vector index */
        offsets_path = default_offsets = sibling_file(index_path, ".offsets.npy");
    if (offsets_path && (rc = cli_read_offsets(offsets_path, ix.n, &offsets, &n_docs)) != CLI_EXIT_OK) goto done;

    if (!ids_path) /* OUT.ids next to OUT.npy, as abc embed --batch writes them */
        ids_path = default_ids = sibling_file(index_path, ".ids");
    if (ids_path && (rc = load_ids(ids_path, offsets ? n_docs : ix.n, &ids_data, &ids)) != CLI_EXIT_OK) goto done;

    if (query_path) {
        char err[512];
        if (npy_read(query_path, &qa, err, sizeof err) != 0) {
            rc = cli_report(ABC_ERR_IO, "%s", err);
            goto done;
        }
        int64_t d = qa.ndim >= 1 ? qa.shape[qa.ndim - 1] : 0;
        if (qa.dtype != NPY_F32 || (qa.ndim != 1 && qa.ndim != 2) || d != (int64_t)ix.dim || qa.count == 0) {
            rc = cli_report(ABC_ERR_INVALID_ARG, "'%s' must be float32 of shape [%zu] or [Q,%zu] (the index's dimension)",
                            query_path, ix.dim, ix.dim);
            goto done;
        }
        n_queries = qa.count / ix.dim;
        queries = qa.data;
        if (offsets) n_query_rows = n_queries, n_queries = 1; /* [Tq, D]: one multi-vector query */
    } else {
        abc_model *model = NULL;
        abc_context *ctx = NULL;
        abc_error err = {0};
        abc_status st = abc_model_load(model_path, NULL, &model, &err);
        const int model_dim = st != ABC_OK ? 0 : offsets ? abc_model_multi_vector_dim(model) : abc_model_embedding_dim(model);
        if (st == ABC_OK && (size_t)model_dim != ix.dim)
            rc = cli_report(ABC_ERR_INVALID_ARG, "the model's %s have %d values, the index's rows %zu",
                            offsets ? "token vectors" : "embeddings", model_dim, ix.dim);
        else if (st == ABC_OK && dim && offsets)
            rc = cli_usage_error("--dim applies to single-vector indexes, not to token vectors");
        else if (st == ABC_OK && dim)
            rc = cli_check_dim(model, model_path, dim);
        /* the index's record of its rows' dim and task: a query embedded otherwise does not compare */
        bool recorded = false;
        if (st == ABC_OK && rc == CLI_EXIT_OK)
            rc = cli_check_index_meta(index_path, model, task, (int)dim, offsets != NULL, &recorded);
        int n_dims = 0;
        const int *dims = st == ABC_OK ? abc_model_matryoshka_dims(model, &n_dims) : NULL;
        if (st == ABC_OK && rc == CLI_EXIT_OK && !recorded && !offsets && n_dims > 0) {
            const int have = index_matryoshka_dim(&ix, dims, n_dims), want = dim ? (int)dim : model_dim;
            if (have != want)
                rc = cli_report(ABC_ERR_INVALID_ARG, "the index's rows are %d values wide (%s; it has no OUT.meta.json), "
                                "the query %d: %s%d", have, have < model_dim ? "zero after that" : "the full width", want,
                                have < model_dim ? "give --dim " : "leave out --dim for ", have);
        }
        if (rc != CLI_EXIT_OK) {
            abc_model_free(model);
            goto done;
        }
        abc_context_params cp = abc_context_default_params();
        cp.n_threads = (int)threads;
        if (st == ABC_OK) st = abc_context_new(model, &cp, &ctx, &err);
        abc_input in = abc_input_default();
        in.image_path = image;
        in.text = text;
        in.prompt = prompt;
        in.task = task;
        in.dim = (int)dim; /* abc_embed writes dim values: the rest of the row stays zero, as the index's */
        in.role = role;
        if (st == ABC_OK && offsets) { /* the query's token vectors */
            st = abc_embed_multi(ctx, &in, NULL, 0, &n_query_rows);
            if (st == ABC_OK && !(queries = malloc((n_query_rows ? n_query_rows : 1) * ix.dim * sizeof *queries)))
                st = ABC_ERR_NOMEM;
            if (st == ABC_OK) st = abc_embed_multi(ctx, &in, queries, n_query_rows * ix.dim, &n_query_rows);
            if (st != ABC_OK) snprintf(err.message, sizeof err.message, "%s", abc_context_errmsg(ctx));
        } else if (st == ABC_OK && !(queries = calloc(ix.dim, sizeof *queries))) st = ABC_ERR_NOMEM;
        if (st == ABC_OK && !offsets) {
            st = abc_embed(ctx, &in, queries, ix.dim);
            if (st != ABC_OK) snprintf(err.message, sizeof err.message, "%s", abc_context_errmsg(ctx));
        }
        if (st != ABC_OK) rc = cli_report(st, "%s", st == ABC_ERR_NOMEM && !*err.message ? "out of memory" : err.message);
        abc_context_free(ctx);
        abc_model_free(model);
        if (rc != CLI_EXIT_OK) goto done;
    }

    if (offsets) { /* MaxSim over the documents, one query */
        double t0 = cli_now();
        merged = malloc((n_docs ? n_docs : 1) * sizeof *merged);
        if (!merged) {
            rc = cli_report(ABC_ERR_NOMEM, "out of memory for the search");
            goto done;
        }
        size_t m = 0;
        for (size_t d = 0; d < n_docs; d++) {
            const size_t lo = (size_t)offsets[d], hi = (size_t)offsets[d + 1];
            const float s = cli_maxsim(queries, n_query_rows, ix.rows + lo * ix.dim, hi - lo, ix.dim);
            if (s == s) merged[m++] = (hit){s, d};
        }
        if (stats)
            fprintf(stderr, "abc: MaxSim of %zu query vectors x %zu documents (%zu vectors of %zu) in %.3f s\n",
                    n_query_rows, n_docs, ix.n, ix.dim, cli_now() - t0);
        qsort(merged, m, sizeof *merged, better_first);
        print_hits(0, 1, merged, m < (size_t)k ? m : (size_t)k, ids, json);
        if (json) puts("");
        if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_report(ABC_ERR_IO, "cannot write to standard output");
        goto done;
    }

    size_t kk = (size_t)k < ix.n ? (size_t)k : ix.n, n_threads = (size_t)threads;
    if (n_threads > ix.n / 256 + 1) n_threads = ix.n / 256 + 1; /* small indexes: fewer threads */
    heaps = malloc((n_threads * n_queries * (kk ? kk : 1)) * sizeof *heaps);
    counts = calloc(n_threads * n_queries, sizeof *counts);
    tasks = calloc(n_threads, sizeof *tasks);
    tids = calloc(n_threads, sizeof *tids);
    merged = malloc((n_threads * (kk ? kk : 1)) * sizeof *merged);
    if (!heaps || !counts || !tasks || !tids || !merged) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory for the search");
        goto done;
    }
    dot1_fn dot1;
    dot4_fn dot4;
    pick_dots(&dot1, &dot4);
    double t0 = cli_now();
    size_t started = 0;
    for (size_t t = 0; t < n_threads; t++) {
        tasks[t] = (scan_task){&ix, queries, n_queries, kk ? kk : 1, ix.n * t / n_threads, ix.n * (t + 1) / n_threads, dot1, dot4,
                               heaps + t * n_queries * (kk ? kk : 1), counts + t * n_queries};
        if (kk == 0) continue;
        if (t == 0) continue; /* this thread scans block 0 */
        if (pthread_create(&tids[t], NULL, scan, &tasks[t]) != 0) {
            for (size_t u = 1; u < t; u++) pthread_join(tids[u], NULL);
            rc = cli_report(ABC_ERR_NOMEM, "cannot start a search thread");
            goto done;
        }
        started = t;
    }
    if (kk) scan(&tasks[0]);
    for (size_t t = 1; t <= started; t++) pthread_join(tids[t], NULL);
    double seconds = cli_now() - t0;
    if (stats)
        fprintf(stderr, "abc: %zu queries x %zu rows of %zu in %.3f s: %.1f queries/s, %.2f GB/s of rows\n", n_queries,
                ix.n, ix.dim, seconds, (double)n_queries / seconds, (double)ix.n * ix.dim * 4 / seconds / 1e9);

    if (json && n_queries > 1) putchar('[');
    for (size_t q = 0; q < n_queries; q++) {
        size_t m = 0;
        for (size_t t = 0; t < n_threads; t++) {
            const hit *h = tasks[t].heaps + q * tasks[t].k;
            for (size_t j = 0; j < tasks[t].counts[q]; j++) merged[m++] = h[j];
        }
        qsort(merged, m, sizeof *merged, better_first);
        print_hits(q, n_queries, merged, m < kk ? m : kk, ids, json);
    }
    if (json) puts(n_queries > 1 ? "]" : "");
    if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_report(ABC_ERR_IO, "cannot write to standard output");

done:
    if (ix.map) munmap(ix.map, ix.map_size);
    if (qa.data) npy_free(&qa);
    else free(queries);
    free(ids_data);
    free(ids);
    free(default_ids);
    free(default_offsets);
    free(offsets);
    free(heaps);
    free(counts);
    free(tasks);
    free(tids);
    free(merged);
    return rc;
}
