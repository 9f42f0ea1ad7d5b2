/* tool_retrieval.c — independent helpers for the collection tests (test_batch.sh, test_search.sh,
 * test_eval.sh). Shares nothing with cli/batch.c, cli/search.c or cli/eval.c but the .npy reader and the
 * JSON parser; scores are summed in double, one product at a time.
 *
 *   stack OUT.npy A.npy B.npy ...      stacks [D] vectors into [N,D]
 *   concat OUT.npy A.npy B.npy ...     concatenates [n_i,D] matrices
 *   topk INDEX.npy Q.npy K [IDS]       top K rows per query: "[Q<TAB>]RANK<TAB>SCORE<TAB>ID" (NaN rows skipped,
 *                                      ties to the lower row)
 *   rank Q.npy C0.npy C1.npy ...       1 + the number of Ci (i > 0) scoring strictly higher than C0
 *   rankrows X.npy Q C0 C1 ...         the same for rows Q, C0, C1, ... of one [N,D] matrix
 *   nanrows X.npy                      the indices of the all-NaN rows, one per line
 *   jsonl2npy IN.jsonl OUT.npy IDS     {"id":..,"embedding":[..]} lines to [N,D] (null rows: NaN) + ids
 *   json2npy IN.json OUT.npy           {"dim":D,"embedding":[..]} to [D]
 *   random OUT.npy N D SEED            N random unit rows of D floats (xorshift; for the search tests)
 */
#include "cli/npy.h"
#include "model_convert/json.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *msg, const char *arg) {
    fprintf(stderr, "tool_retrieval: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return 1;
}

static int load(const char *path, npy_array *a) {
    char err[512];
    if (npy_read(path, a, err, sizeof err) != 0) return die(err, NULL);
    if (a->dtype != NPY_F32) return die("not float32", path);
    return 0;
}

static int save(const char *path, int ndim, const int64_t *shape, const float *data) {
    char err[512];
    if (npy_write(path, NPY_F32, ndim, shape, data, err, sizeof err) != 0) return die(err, NULL);
    return 0;
}

static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t k = 0; k < n; k++) s += (double)a[k] * (double)b[k];
    return s;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *n = len;
    return buf;
}

static int cmd_concat(int argc, char **argv, int stack) {
    if (argc < 2) return die("usage: stack|concat OUT.npy IN.npy...", NULL);
    size_t rows = 0, dim = 0, total = 0;
    float *out = NULL;
    for (int i = 1; i < argc; i++) {
        npy_array a;
        if (load(argv[i], &a)) return 1;
        size_t d = (size_t)a.shape[a.ndim - 1], r = stack ? 1 : a.count / (d ? d : 1);
        if ((stack && a.ndim != 1) || (!stack && a.ndim != 2) || (dim && d != dim)) return die("bad shape", argv[i]);
        dim = d;
        out = realloc(out, (total + a.count) * sizeof *out + 1);
        memcpy(out + total, a.data, a.count * sizeof *out);
        total += a.count;
        rows += r;
        npy_free(&a);
    }
    int64_t shape[2] = {(int64_t)rows, (int64_t)dim};
    int rc = save(argv[0], 2, shape, out);
    free(out);
    return rc;
}

typedef struct {
    double score;
    size_t row;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

static int cmd_topk(int argc, char **argv) {
    if (argc < 3) return die("usage: topk INDEX.npy Q.npy K [IDS]", NULL);
    npy_array ix, q;
    if (load(argv[0], &ix) || load(argv[1], &q)) return 1;
    size_t dim = (size_t)ix.shape[1], n = (size_t)ix.shape[0], nq = q.count / dim, k = (size_t)atol(argv[2]);
    char **ids = NULL, *idtext = NULL;
    if (argc > 3) {
        size_t len;
        idtext = slurp(argv[3], &len);
        if (!idtext) return die("cannot read", argv[3]);
        ids = calloc(n + 1, sizeof *ids);
        char *p = idtext;
        for (size_t r = 0; r < n && *p; r++) {
            ids[r] = p;
            char *nl = strchr(p, '\n');
            if (!nl) break;
            *nl = 0;
            p = nl + 1;
        }
    }
    scored *s = malloc((n + 1) * sizeof *s);
    for (size_t qi = 0; qi < nq; qi++) {
        size_t m = 0;
        for (size_t r = 0; r < n; r++) {
            const float *row = (const float *)ix.data + r * dim;
            if (isnan(row[0])) continue;
            s[m++] = (scored){dotd((const float *)q.data + qi * dim, row, dim), r};
        }
        qsort(s, m, sizeof *s, by_score);
        for (size_t j = 0; j < m && j < k; j++) {
            if (nq > 1) printf("%zu\t", qi);
            printf("%zu\t%.9g\t", j + 1, s[j].score);
            if (ids && ids[s[j].row]) fputs(ids[s[j].row], stdout);
            else printf("%zu", s[j].row);
            putchar('\n');
        }
    }
    free(s);
    free(ids);
    free(idtext);
    npy_free(&ix);
    npy_free(&q);
    return 0;
}

static int cmd_rank(int argc, char **argv) {
    if (argc < 2) return die("usage: rank Q.npy C0.npy ...", NULL);
    npy_array q, c0;
    if (load(argv[0], &q) || load(argv[1], &c0)) return 1;
    double gt = dotd(q.data, c0.data, q.count);
    size_t rank = 1;
    for (int i = 2; i < argc; i++) {
        npy_array c;
        if (load(argv[i], &c)) return 1;
        rank += dotd(q.data, c.data, q.count) > gt;
        npy_free(&c);
    }
    printf("%zu\n", rank);
    npy_free(&q);
    npy_free(&c0);
    return 0;
}

static int cmd_rankrows(int argc, char **argv) {
    if (argc < 3) return die("usage: rankrows X.npy Q C0 ...", NULL);
    npy_array x;
    if (load(argv[0], &x)) return 1;
    const size_t n = x.ndim == 2 ? (size_t)x.shape[0] : 0, dim = n ? x.count / n : 0;
    size_t row[64];
    int nrows = argc - 1, rc = 0;
    if (n == 0 || nrows > 64) rc = die("rankrows: X must be [N,D], with at most 63 candidates", argv[0]);
    for (int i = 0; rc == 0 && i < nrows; i++) {
        row[i] = (size_t)atol(argv[i + 1]);
        if (row[i] >= n) rc = die("rankrows: row out of range", argv[i + 1]);
    }
    if (rc == 0) {
        const float *rows = x.data, *q = rows + row[0] * dim;
        const double gt = dotd(q, rows + row[1] * dim, dim);
        size_t rank = 1;
        for (int i = 2; i < nrows; i++) rank += dotd(q, rows + row[i] * dim, dim) > gt;
        printf("%zu\n", rank);
    }
    npy_free(&x);
    return rc;
}

static int cmd_nanrows(int argc, char **argv) {
    if (argc < 1) return die("usage: nanrows X.npy", NULL);
    npy_array a;
    if (load(argv[0], &a)) return 1;
    size_t dim = (size_t)a.shape[1];
    for (size_t r = 0; r < (size_t)a.shape[0]; r++) {
        bool all = true;
        for (size_t d = 0; d < dim; d++) all = all && isnan(((float *)a.data)[r * dim + d]);
        if (all) printf("%zu\n", r);
    }
    npy_free(&a);
    return 0;
}

/* Floats parsed with strtof: "%.9g" text reads back to the exact float. */
static int embedding_values(const json_value *e, float *out, size_t dim) {
    if (!e || e->type == JSON_NULL) {
        for (size_t d = 0; d < dim; d++) out[d] = NAN;
        return 0;
    }
    if (e->type != JSON_ARRAY || e->n_items != dim) return -1;
    for (size_t d = 0; d < dim; d++) out[d] = (float)e->items[d].number;
    return 0;
}

static int cmd_jsonl2npy(int argc, char **argv) {
    if (argc < 3) return die("usage: jsonl2npy IN.jsonl OUT.npy IDS", NULL);
    size_t len;
    char *text = slurp(argv[0], &len);
    if (!text) return die("cannot read", argv[0]);
    FILE *ids = fopen(argv[2], "w");
    float *out = NULL;
    size_t rows = 0, dim = 0;
    char err[256];
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        json_value *v = json_parse(line, n, err, sizeof err);
        if (!v) return die(err, NULL);
        const json_value *e = json_get(v, "embedding"), *id = json_get(v, "id");
        if (!dim && e && e->type == JSON_ARRAY) dim = e->n_items;
        if (!dim || !id || id->type != JSON_STRING) return die("bad line", NULL);
        out = realloc(out, (rows + 1) * dim * sizeof *out);
        if (embedding_values(e, out + rows * dim, dim)) return die("bad embedding", NULL);
        fprintf(ids, "%s\n", id->string);
        rows++;
        json_free(v);
        line = nl ? nl + 1 : line + n;
    }
    fclose(ids);
    int64_t shape[2] = {(int64_t)rows, (int64_t)dim};
    int rc = save(argv[1], 2, shape, out);
    free(out);
    free(text);
    return rc;
}

static int cmd_json2npy(int argc, char **argv) {
    if (argc < 2) return die("usage: json2npy IN.json OUT.npy", NULL);
    size_t len;
    char *text = slurp(argv[0], &len), err[256];
    if (!text) return die("cannot read", argv[0]);
    json_value *v = json_parse(text, len, err, sizeof err);
    if (!v) return die(err, NULL);
    const json_value *d = json_get(v, "dim"), *e = json_get(v, "embedding");
    if (!d || !e || e->type != JSON_ARRAY || (size_t)d->number != e->n_items) return die("bad object", NULL);
    float *out = malloc(e->n_items * sizeof *out + 1);
    embedding_values(e, out, e->n_items);
    int64_t shape[1] = {(int64_t)e->n_items};
    int rc = save(argv[1], 1, shape, out);
    free(out);
    json_free(v);
    free(text);
    return rc;
}

static int cmd_random(int argc, char **argv) {
    if (argc < 4) return die("usage: random OUT.npy N D SEED", NULL);
    size_t n = (size_t)atol(argv[1]), dim = (size_t)atol(argv[2]);
    uint64_t x = (uint64_t)atoll(argv[3]) * 2654435761u + 1;
    float *out = malloc(n * dim * sizeof *out + 1);
    for (size_t r = 0; r < n; r++) {
        double norm = 0;
        for (size_t d = 0; d < dim; d++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            float v = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
            out[r * dim + d] = v;
            norm += (double)v * v;
        }
        for (size_t d = 0; d < dim; d++) out[r * dim + d] = (float)(out[r * dim + d] / sqrt(norm));
    }
    int64_t shape[2] = {(int64_t)n, (int64_t)dim};
    int rc = save(argv[0], 2, shape, out);
    free(out);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) return die("usage: tool_retrieval stack|concat|topk|rank|rankrows|nanrows|jsonl2npy|json2npy|random ...", NULL);
    const char *cmd = argv[1];
    argc -= 2;
    argv += 2;
    if (!strcmp(cmd, "stack")) return cmd_concat(argc, argv, 1);
    if (!strcmp(cmd, "concat")) return cmd_concat(argc, argv, 0);
    if (!strcmp(cmd, "topk")) return cmd_topk(argc, argv);
    if (!strcmp(cmd, "rank")) return cmd_rank(argc, argv);
    if (!strcmp(cmd, "rankrows")) return cmd_rankrows(argc, argv);
    if (!strcmp(cmd, "nanrows")) return cmd_nanrows(argc, argv);
    if (!strcmp(cmd, "jsonl2npy")) return cmd_jsonl2npy(argc, argv);
    if (!strcmp(cmd, "json2npy")) return cmd_json2npy(argc, argv);
    if (!strcmp(cmd, "random")) return cmd_random(argc, argv);
    return die("unknown command", cmd);
}
