/* eval.c — `abc eval -m MODEL TASK.jsonl`: MMEB-style retrieval evaluation (README "Collections").
 *
 * Each line uses MMEB's field names: qry_text, qry_img_path, tgt_text (list), tgt_img_path (list); the
 * ground truth is candidate 0. Queries are embedded with the query role, candidates with the candidate
 * role; a candidate (same image path and text) that appears under several queries is embedded once.
 * The ground truth's rank is 1 + the number of other candidates scoring strictly higher (ties go to
 * the ground truth, as an argmax over a list that starts with it does); Precision@1 is the share of
 * queries ranking it first. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "model_convert/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *image; /* resolved path or NULL */
    char *text;  /* NULL for none */
} item;

typedef struct {
    size_t line;     /* 1-based */
    size_t query;    /* index into the items */
    size_t *cands;   /* indices into the items; [0] is the ground truth */
    size_t n_cands;
} task_query;

typedef struct {
    item *items;
    size_t n_items, cap_items;
    size_t n_query_items;
    size_t *table;   /* open addressing over candidate items: index + 1, 0 empty */
    size_t table_cap;
    size_t first_error_index;
    bool failed;
    abc_status fail_status;
    char fail_message[512];
} task_set;

/* MMEB writes the Phi-3-V image placeholder into its texts; the model's own template places the image,
 * so the placeholder (and the whitespace after it) is dropped. */
static char *clean_text(const char *s) {
    static const char tag[] = "<|image_1|>";
    size_t n = strlen(s), j = 0;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    for (size_t k = 0; k < n;) {
        if (strncmp(s + k, tag, sizeof tag - 1) == 0) {
            k += sizeof tag - 1;
            while (k < n && (s[k] == '\n' || s[k] == ' ')) k++;
            continue;
        }
        out[j++] = s[k++];
    }
    out[j] = 0;
    if (j == 0) {
        free(out);
        return strdup("\x01"); /* marker: no text (never valid in a real text after cleaning) */
    }
    return out;
}

static uint64_t item_hash(const item *it) {
    uint64_t h = 14695981039346656037ull;
    const char *parts[2] = {it->image, it->text};
    for (int p = 0; p < 2; p++) {
        h = (h ^ (uint64_t)(parts[p] ? 1 + p : 8 + p)) * 1099511628211ull; /* present or not */
        for (const unsigned char *c = (const unsigned char *)(parts[p] ? parts[p] : ""); *c; c++)
            h = (h ^ *c) * 1099511628211ull;
    }
    return h;
}

static bool same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool push_item(task_set *ts, item it, size_t *index) {
    if (ts->n_items == ts->cap_items) {
        size_t cap = ts->cap_items ? ts->cap_items * 2 : 64;
        item *bigger = realloc(ts->items, cap * sizeof *bigger);
        if (!bigger) return false;
        ts->items = bigger;
        ts->cap_items = cap;
    }
    ts->items[ts->n_items] = it;
    *index = ts->n_items++;
    return true;
}

/* Returns the index of the candidate item equal to `it` (taking ownership of its strings) or adds it. */
static bool intern_candidate(task_set *ts, item it, size_t *index) {
    if (ts->n_items * 2 >= ts->table_cap) { /* grow and rehash */
        size_t cap = ts->table_cap ? ts->table_cap * 2 : 1024;
        size_t *t = calloc(cap, sizeof *t);
        if (!t) return false;
        for (size_t k = 0; k < ts->table_cap; k++) {
            if (!ts->table[k]) continue;
            size_t j = (size_t)(item_hash(&ts->items[ts->table[k] - 1]) & (cap - 1));
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = ts->table[k];
        }
        free(ts->table);
        ts->table = t;
        ts->table_cap = cap;
    }
    size_t j = (size_t)(item_hash(&it) & (ts->table_cap - 1));
    for (; ts->table[j]; j = (j + 1) & (ts->table_cap - 1)) {
        const item *old = &ts->items[ts->table[j] - 1];
        if (same_str(old->image, it.image) && same_str(old->text, it.text)) {
            free(it.image);
            free(it.text);
            *index = ts->table[j] - 1;
            return true;
        }
    }
    if (!push_item(ts, it, index)) return false;
    ts->table[j] = *index + 1;
    return true;
}

/* An MMEB field: a string, "" or null (nothing). */
static const char *field_string(const json_value *v) {
    if (!v || v->type != JSON_STRING || v->string_len == 0) return NULL;
    return v->string;
}

static int make_item(const char *root, const char *image, const char *text, size_t line, item *out) {
    out->image = NULL;
    out->text = NULL;
    if (image && !(out->image = cli_resolve_path(root, image))) return cli_report(ABC_ERR_NOMEM, "out of memory");
    if (text) {
        char *t = clean_text(text);
        if (!t) return cli_report(ABC_ERR_NOMEM, "out of memory");
        if (strcmp(t, "\x01") == 0) free(t);
        else out->text = t;
    }
    if (!out->image && !out->text) {
        free(out->image);
        return cli_report(ABC_ERR_INVALID_ARG, "line %zu: an entry has neither an image nor a text", line);
    }
    return CLI_EXIT_OK;
}

static bool on_eval_done(void *user, size_t index, abc_status st, const char *message) {
    task_set *ts = user;
    if (st == ABC_OK) return true;
    if (!ts->failed) {
        ts->failed = true;
        ts->first_error_index = index;
        ts->fail_status = st;
        snprintf(ts->fail_message, sizeof ts->fail_message, "%s", message);
    }
    return false;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t k = 0; k < n; k++) s += (double)a[k] * (double)b[k];
    return s;
}

/* A multi-vector model: each item's [T, D] token vectors, one after another in *vecs; item k's are rows
 * (*offs)[k] .. (*offs)[k+1]. A failure goes to on_eval_done (and stops). */
static int embed_items_multi(const abc_model *model, int threads, const abc_input *inputs, size_t n, size_t dim,
                             task_set *ts, float **vecs, size_t **offs) {
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = threads;
    abc_context *ctx = NULL;
    abc_error aerr = {0};
    abc_status st = abc_context_new(model, &cp, &ctx, &aerr);
    if (st != ABC_OK) return cli_report(st, "%s", aerr.message);
    size_t *o = calloc(n + 1, sizeof *o), cap = 0;
    float *v = NULL;
    int rc = o ? CLI_EXIT_OK : cli_report(ABC_ERR_NOMEM, "out of memory for %zu inputs", n);
    for (size_t k = 0; k < n && rc == CLI_EXIT_OK && !ts->failed; k++) {
        size_t t = 0;
        st = abc_embed_multi(ctx, &inputs[k], NULL, 0, &t);
        if (st == ABC_OK && (o[k] + t) * dim > cap) {
            const size_t want = (o[k] + t) * dim * 2;
            float *grown = realloc(v, want * sizeof *v);
            if (!grown) rc = cli_report(ABC_ERR_NOMEM, "out of memory for %zu token vectors", o[k] + t);
            else v = grown, cap = want;
        }
        if (rc == CLI_EXIT_OK && st == ABC_OK) st = abc_embed_multi(ctx, &inputs[k], v + o[k] * dim, cap - o[k] * dim, &t);
        if (rc == CLI_EXIT_OK && st != ABC_OK) on_eval_done(ts, k, st, abc_context_errmsg(ctx));
        o[k + 1] = o[k] + t;
    }
    abc_context_free(ctx);
    *vecs = v;
    *offs = o;
    return rc;
}

static void print_eval_usage(FILE *f) {
    fputs("usage: abc eval -m MODEL TASK.jsonl [--image-root DIR] [--json] [--threads T] [--multi-vector]\n"
          "                [--task NAME] [--dim N]\n"
          "\n"
          "MMEB-style evaluation: each line of TASK.jsonl has qry_text, qry_img_path, tgt_text (list) and\n"
          "tgt_img_path (list), the ground truth first. Prints Precision@1 (hit@1), the number of queries\n"
          "and how many candidate embeddings were computed (each distinct image path + text once).\n"
          "A multi-vector model (preset colqwen2) scores by MaxSim over the token vectors.\n"
          "  --image-root DIR  folder that relative image paths start from (default: TASK.jsonl's)\n"
          "  --json            one JSON object, with each query's rank of the ground truth\n"
          "  --threads T       worker threads (default: all online CPUs)\n"
          "  --task NAME       the task adapter of every query and candidate (jina-v4; default: the file's)\n"
          "  --dim N           embed queries and candidates at Matryoshka dim N (one of the model's dims)\n"
          "  --multi-vector    score by MaxSim over the token vectors of a model that also has a single\n"
          "                    vector (jina-v4)\n",
          f);
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *task_path = NULL, *root_opt = NULL, *v = NULL, *adapter = NULL;
    bool json = false, multi_flag = false;
    long threads = 0, dim_opt = 0;
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        const char *arg = argv[c.i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            print_eval_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) json = true;
        else if (strcmp(arg, "--multi-vector") == 0) multi_flag = true;
        else if (cli_take(&c, "--model", "-m", &model_path)) {
        } else if (cli_take(&c, "--image-root", NULL, &root_opt)) {
        } else if (cli_take(&c, "--task", NULL, &adapter)) {
        } else if (cli_take(&c, "--dim", NULL, &v)) {
            if (!c.bad && !cli_parse_long(v, 1, 1 << 20, &dim_opt))
                return cli_usage_error("--dim must be a positive integer, not '%s'", v);
        } else if (cli_take(&c, "--threads", "-t", &v)) {
            if (!c.bad && !cli_parse_long(v, 1, 1024, &threads))
                return cli_usage_error("--threads must be an integer from 1 to 1024, not '%s'", v);
        } else if (arg[0] == '-' && arg[1] != 0) {
            return cli_usage_error("eval: unknown option '%s'", arg);
        } else if (!task_path) {
            task_path = arg;
        } else {
            return cli_usage_error("eval: one TASK.jsonl expected, got also '%s'", arg);
        }
        if (c.bad) return CLI_EXIT_USAGE;
    }
    if (!model_path) return cli_usage_error("eval: -m MODEL is required");
    if (!task_path) return cli_usage_error("eval: TASK.jsonl is required");

    char err[512], *data = NULL, **lines = NULL, *root = NULL;
    size_t size = 0, n_lines = 0, *lens = NULL, n_q = 0, naive = 0;
    task_set ts;
    memset(&ts, 0, sizeof ts);
    task_query *qs = NULL;
    abc_model *model = NULL;
    abc_input *inputs = NULL;
    size_t *todo = NULL, *ranks = NULL, *offs = NULL;
    float *emb = NULL;
    int rc = CLI_EXIT_OK;
    if (cli_read_file(task_path, &data, &size, err, sizeof err) != 0) {
        rc = cli_report(ABC_ERR_IO, "%s", err);
        goto done;
    }
    if (cli_split_lines(data, size, &lines, &lens, &n_lines) != 0 ||
        !(root = root_opt ? strdup(root_opt) : strcmp(task_path, "-") == 0 ? strdup("") : cli_dirname(task_path)) ||
        !(qs = calloc(n_lines ? n_lines : 1, sizeof *qs))) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory reading '%s'", task_path);
        goto done;
    }
    /* queries first (items 0..n_q-1), then the distinct candidates */
    for (int pass = 0; pass < 2 && rc == CLI_EXIT_OK; pass++) {
        size_t qn = 0;
        for (size_t l = 0; l < n_lines && rc == CLI_EXIT_OK; l++) {
            if (lens[l] == 0) continue;
            json_value *j = json_parse(lines[l], lens[l], err, sizeof err);
            if (!j || j->type != JSON_OBJECT) {
                rc = cli_report(ABC_ERR_INVALID_ARG, "line %zu: %s", l + 1, j ? "not a JSON object" : err);
                json_free(j);
                break;
            }
            const json_value *tt = json_get(j, "tgt_text"), *ti = json_get(j, "tgt_img_path");
            size_t nt = tt && tt->type == JSON_ARRAY ? tt->n_items : 0, ni = ti && ti->type == JSON_ARRAY ? ti->n_items : 0;
            size_t n = nt > ni ? nt : ni;
            if ((tt && tt->type != JSON_ARRAY && tt->type != JSON_NULL) || (ti && ti->type != JSON_ARRAY && ti->type != JSON_NULL) ||
                (nt && ni && nt != ni) || n == 0) {
                rc = cli_report(ABC_ERR_INVALID_ARG, "line %zu: tgt_text and tgt_img_path must be lists of the same length (not both empty)", l + 1);
            } else if (pass == 0) {
                item it;
                rc = make_item(root, field_string(json_get(j, "qry_img_path")), field_string(json_get(j, "qry_text")), l + 1, &it);
                if (rc == CLI_EXIT_OK) {
                    qs[qn].line = l + 1;
                    if (!push_item(&ts, it, &qs[qn].query)) rc = cli_report(ABC_ERR_NOMEM, "out of memory");
                    qn++;
                }
            } else {
                task_query *q = &qs[qn++];
                if (!(q->cands = malloc(n * sizeof *q->cands))) rc = cli_report(ABC_ERR_NOMEM, "out of memory");
                for (size_t k = 0; k < n && rc == CLI_EXIT_OK; k++) {
                    const json_value *a = nt ? &tt->items[k] : NULL, *b = ni ? &ti->items[k] : NULL;
                    if ((a && a->type != JSON_STRING && a->type != JSON_NULL) || (b && b->type != JSON_STRING && b->type != JSON_NULL)) {
                        rc = cli_report(ABC_ERR_INVALID_ARG, "line %zu: candidate %zu is not a string", l + 1, k);
                        break;
                    }
                    item it;
                    rc = make_item(root, field_string(b), field_string(a), l + 1, &it);
                    if (rc == CLI_EXIT_OK && !intern_candidate(&ts, it, &q->cands[q->n_cands++]))
                        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
                }
                naive += n;
            }
            json_free(j);
        }
        if (pass == 0) n_q = ts.n_query_items = ts.n_items;
    }
    if (rc != CLI_EXIT_OK) goto done;
    if (n_q == 0) {
        rc = cli_report(ABC_ERR_INVALID_ARG, "'%s' has no queries", task_path);
        goto done;
    }

    abc_error aerr = {0};
    abc_status st = abc_model_load(model_path, NULL, &model, &aerr);
    if (st != ABC_OK) {
        rc = cli_report(st, "%s", aerr.message);
        goto done;
    }
    if (multi_flag && abc_model_multi_vector_dim(model) == 0) {
        rc = cli_usage_error("--multi-vector: '%s' has no multi-vector output", model_path);
        goto done;
    }
    const size_t multi =
        abc_model_embedding_dim(model) == 0 || multi_flag ? (size_t)abc_model_multi_vector_dim(model) : 0;
    if (dim_opt && multi) {
        rc = cli_usage_error("--dim applies to the single vector, not to MaxSim over token vectors");
        goto done;
    }
    if (dim_opt && (rc = cli_check_dim(model, model_path, dim_opt)) != CLI_EXIT_OK) goto done;
    const size_t dim = multi ? multi : (size_t)abc_model_embedding_dim(model), n_items = ts.n_items;
    inputs = calloc(n_items, sizeof *inputs);
    todo = malloc(n_items * sizeof *todo);
    ranks = malloc(n_q * sizeof *ranks);
    emb = multi ? NULL : malloc(n_items * dim * sizeof *emb);
    if (!inputs || !todo || !ranks || (!emb && !multi)) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory for %zu embeddings", n_items);
        goto done;
    }
    for (size_t k = 0; k < n_items; k++) {
        abc_input in = abc_input_default();
        in.image_path = ts.items[k].image;
        in.text = ts.items[k].text;
        in.role = k < n_q ? ABC_ROLE_QUERY : ABC_ROLE_CANDIDATE;
        in.task = adapter;
        in.dim = (int)dim_opt; /* each row keeps dim values, the rest zero (cli_embed_many): dot over dim */
        inputs[k] = in;
        todo[k] = k;
    }
    cli_embed_job job = {model, (int)threads, inputs, todo, n_items, emb, NULL, NULL, on_eval_done, &ts};
    if (multi) rc = embed_items_multi(model, (int)threads, inputs, n_items, dim, &ts, &emb, &offs);
    else rc = cli_embed_many(&job);
    if (rc != CLI_EXIT_OK) goto done;
    if (ts.failed) {
        size_t i = ts.first_error_index, line = 0;
        for (size_t q = 0; q < n_q && !line; q++) {
            if (qs[q].query == i) line = qs[q].line;
            for (size_t k = 0; k < qs[q].n_cands && !line; k++)
                if (qs[q].cands[k] == i) line = qs[q].line;
        }
        rc = cli_report(ts.fail_status, "line %zu: %s", line, ts.fail_message);
        goto done;
    }

    size_t hits = 0;
    for (size_t q = 0; q < n_q; q++) {
        const size_t qi = qs[q].query;
        const float *qv = emb + (multi ? offs[qi] : qi) * dim;
#define EVAL_SCORE(c) (multi ? (double)cli_maxsim(qv, offs[qi + 1] - offs[qi], emb + offs[c] * dim, offs[(c) + 1] - offs[c], dim) \
                             : dot_d(qv, emb + (c) * dim, dim))
        double gt = EVAL_SCORE(qs[q].cands[0]);
        size_t rank = 1;
        for (size_t k = 1; k < qs[q].n_cands; k++) rank += EVAL_SCORE(qs[q].cands[k]) > gt;
#undef EVAL_SCORE
        ranks[q] = rank;
        hits += rank == 1;
    }
    const size_t embedded = n_items - n_q;
    if (json) {
        printf("{\"queries\":%zu,\"hits_at_1\":%zu,\"precision_at_1\":%.6f,\"candidates_embedded\":%zu,"
               "\"candidates_naive\":%zu,\"ranks\":[",
               n_q, hits, (double)hits / (double)n_q, embedded, naive);
        for (size_t q = 0; q < n_q; q++) printf(q ? ",%zu" : "%zu", ranks[q]);
        puts("]}");
    } else {
        printf("queries: %zu\nhit@1: %.6f (%zu of %zu)\ncandidates embedded: %zu (naive: %zu, one per candidate entry)\n",
               n_q, (double)hits / (double)n_q, hits, n_q, embedded, naive);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) rc = cli_report(ABC_ERR_IO, "cannot write to standard output");

done:
    for (size_t k = 0; k < ts.n_items; k++) {
        free(ts.items[k].image);
        free(ts.items[k].text);
    }
    for (size_t q = 0; qs && q < n_lines; q++) free(qs[q].cands);
    free(ts.items);
    free(ts.table);
    free(qs);
    free(inputs);
    free(todo);
    free(ranks);
    free(emb);
    free(offs);
    abc_model_free(model);
    free(data);
    free(lines);
    free(lens);
    free(root);
    return rc;
}
