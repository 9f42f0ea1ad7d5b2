/* bench_model — end-to-end speed and memory of one embedding on a full-size model.
 *
 *   bench_model -m MODEL.abc [--threads 1,2,...] [--runs N] [--size WxH] [--text TEXT] [--no-image]
 *               [--no-text] [--multi-vector] [--json] [--quiet]
 *
 * Embeds a synthetic WxH RGB image (default 448×448: for Qwen2-VL 1024 patches and 256 image tokens,
 * for Phi-3.5-V a 2×2 crop grid and 757 image tokens) with an instruction through the public API
 * (abc_model_load, abc_context_new, abc_embed) and times the stages with the stage callback: each
 * stage's time runs from the previous callback (or the start of abc_embed) to its own. The vision
 * tower is "vision_embeds" (qwen2_vl) or "clip_patch_features" + "image_features" (phi3_v); the
 * language-model prefill is "last_hidden" (qwen2_vl) or "inputs_embeds" + "last_hidden"
 * (phi3_v); the whole embedding is the abc_embed call. Per thread count, one untimed warm-up run
 * (the first one faults the mapped weights in) and then the best of --runs runs. --no-image embeds the
 * text alone (a text candidate: no vision tower); --no-text the image alone (a document; jina-v4 takes
 * no image with text). A model with only token vectors (colqwen2) runs abc_embed_multi; --multi-vector
 * makes one that has both (jina-v4) run it too.
 *
 * Reported beside the times: the weight file's architecture, dtype and size, the speed-up over one
 * thread, the linear-layer + attention GFLOP/s of the vision tower and the prefill (counted from the
 * tensor shapes), and the peak RSS (getrusage ru_maxrss, which includes the touched pages of the
 * mapped weight file; it only grows, so a row holds the peak of the runs so far) against the budget
 * 1.15 × file size + 300 MB, and the resident anonymous/file memory after the runs. --json prints the
 * same as one JSON object with the CPU model, the ISA path the kernels dispatch to and the load
 * average, for comparing machines. Models: `make bench-model`, `bench-model-q8`, `bench-model-7b`,
 * `bench-model-phi3v`.
 *
 * --texts N: instead, N short texts (3 to 20 words each, the same every run) as text candidates, embedded
 * one at a time (abc_embed in a loop) and as one batch (abc_embed_batch, which packs text-only inputs
 * into shared decoder passes), best of --runs after a warm-up on 4 texts; reports texts/s for both, the
 * speed-up, and whether every batched row equals its single one bit for bit (`make bench-texts`).
 *
 * Includes abc.c for the CPU-feature detection (the ISA path) and to read the file's metadata and
 * tensor directory (architecture, dtype, shapes); the model itself runs through the public API.
 */
#include "../abc.c"

#include <sys/resource.h>
#include <time.h>

#define MAX_THREAD_COUNTS 16
#define MAX_STAGES 24

/* ---- clocks and the stage callback ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { PART_OTHER, PART_VISION, PART_PREFILL } stage_part;

static stage_part part_of(const char *stage) {
    static const char *const vision[] = {"vision_embeds", "clip_patch_features", "image_features"};
    static const char *const prefill[] = {ABC_STAGE_INPUTS_EMBEDS, ABC_STAGE_LAST_HIDDEN};
    for (size_t i = 0; i < sizeof vision / sizeof vision[0]; i++)
        if (strcmp(stage, vision[i]) == 0) return PART_VISION;
    for (size_t i = 0; i < sizeof prefill / sizeof prefill[0]; i++)
        if (strcmp(stage, prefill[i]) == 0) return PART_PREFILL;
    return PART_OTHER;
}

/* The shapes that size the work: first dimensions of a few stages' arrays. */
typedef struct {
    int64_t seq_len;          /* input_ids [S] */
    int64_t n_patches;        /* qwen2_vl: pixel_values [P][1176] */
    int64_t clip_slots;       /* phi3_v: clip_patch_features [slots][576][C] */
    int64_t clip_patches;
    int64_t n_image_tokens;   /* vision_embeds / image_features [T][H] */
} work_shape;

/* Names of the stages in the order they were first seen, and one run's time in each. */
typedef struct {
    char names[MAX_STAGES][32];
    int n_names;
    double last;
    double run_s[MAX_STAGES];
    work_shape shape;
} stage_clock;

static int on_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                    const void *data) {
    (void)dtype;
    (void)data;
    stage_clock *c = user;
    double t = now_s();
    int k = 0;
    while (k < c->n_names && strcmp(c->names[k], name) != 0) k++;
    if (k == c->n_names && k < MAX_STAGES) {
        snprintf(c->names[k], sizeof c->names[k], "%s", name);
        c->n_names++;
    }
    if (k < MAX_STAGES) c->run_s[k] += t - c->last;
    if (ndim >= 1) {
        if (strcmp(name, "input_ids") == 0) c->shape.seq_len = shape[0];
        else if (strcmp(name, "pixel_values") == 0 && ndim == 2) c->shape.n_patches = shape[0];
        else if (strcmp(name, "clip_patch_features") == 0 && ndim == 3) {
            c->shape.clip_slots = shape[0];
            c->shape.clip_patches = shape[1];
        } else if (strcmp(name, "vision_embeds") == 0 || strcmp(name, "image_features") == 0)
            c->shape.n_image_tokens = shape[0];
    }
    c->last = t;
    return 0;
}

/* ---- the weight file: what it holds and how much work one embedding is ---- */

typedef struct {
    char architecture[32], preset[32], dtype[16];
    uint64_t file_bytes;
    uint64_t dtype_bytes[8]; /* tensor bytes per DT_* code */
    /* Σ out·in of the 2-D weights per group; attention widths and layer counts from the metadata */
    double vision_macs_per_row, merger_macs_per_row, patch_macs_per_row, lm_macs_per_row;
    int64_t vision_layers, vision_width, merge_size, lm_layers, lm_attn_width, clip_image, clip_patch;
} model_facts;

static void meta_string(const weight_file *wf, const char *key, char *out, size_t cap) {
    const char *s;
    size_t len;
    snprintf(out, cap, "?");
    if (wf_meta(wf, key) && wf_str(wf, key, &s, &len, NULL)) snprintf(out, cap, "%.*s", (int)MIN(len, cap - 1), s);
}

static int64_t meta_int_or(const weight_file *wf, const char *key, int64_t fallback) {
    int64_t v;
    return wf_meta(wf, key) && wf_int(wf, key, &v, NULL) ? v : fallback;
}

static bool read_model_facts(const char *path, model_facts *f) {
    memset(f, 0, sizeof *f);
    weight_file wf;
    abc_error err;
    if (weight_file_open(path, &wf, &err) != ABC_OK) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return false;
    }
    f->file_bytes = wf.size;
    meta_string(&wf, "general.architecture", f->architecture, sizeof f->architecture);
    meta_string(&wf, "general.preset", f->preset, sizeof f->preset);
    meta_string(&wf, "general.dtype", f->dtype, sizeof f->dtype);
    bool phi = strcmp(f->architecture, "phi3_v") == 0;
    for (uint32_t i = 0; i < wf.n_tensors; i++) {
        const tensor *t = &wf.tensors[i];
        if (t->dtype < 8) f->dtype_bytes[t->dtype] += t->nbytes;
        if (t->ndim != 2) continue;
        double macs = (double)t->shape[0] * (double)t->shape[1];
        if (has_prefix(t, "model.layers.")) f->lm_macs_per_row += macs;
        else if (has_prefix(t, "visual.blocks.") || has_prefix(t, "clip.layers.")) f->vision_macs_per_row += macs;
        else if (has_prefix(t, "visual.merger.") || has_prefix(t, "hd.img_projection.")) f->merger_macs_per_row += macs;
        else if (has_prefix(t, "visual.patch_embed.") || has_prefix(t, "clip.embeddings.patch_embedding"))
            f->patch_macs_per_row += macs;
    }
    f->vision_layers = meta_int_or(&wf, phi ? "clip.num_layers" : "vision.depth", 0);
    f->vision_width = meta_int_or(&wf, phi ? "clip.hidden_size" : "vision.embed_dim", 0);
    f->merge_size = meta_int_or(&wf, "vision.spatial_merge_size", 1);
    f->lm_layers = meta_int_or(&wf, "text.num_layers", 0);
    f->lm_attn_width = meta_int_or(&wf, "text.num_heads", 0) * meta_int_or(&wf, "text.head_dim", 0);
    f->clip_image = meta_int_or(&wf, "clip.image_size", 336);
    f->clip_patch = meta_int_or(&wf, "clip.patch_size", 14);
    weight_file_close(&wf);
    return true;
}

/* Multiply-adds ×2 of the linear layers plus the attention products (QKᵀ and PV over the full square;
 * causal kernels may skip half of it, which changes the total by well under 1 % at these lengths). */
static double vision_flops(const model_facts *f, const work_shape *s) {
    if (s->clip_slots > 0) { /* phi3_v: every crop runs CLIP over its patches plus the class token */
        double rows = (double)s->clip_slots * (double)(s->clip_patches + 1);
        double per_slot_attn = 4.0 * (double)(s->clip_patches + 1) * (double)(s->clip_patches + 1) * (double)f->vision_width;
        return 2.0 * rows * f->vision_macs_per_row + 2.0 * (double)s->clip_slots * (double)s->clip_patches * f->patch_macs_per_row +
               2.0 * (double)s->n_image_tokens * f->merger_macs_per_row +
               (double)s->clip_slots * (double)f->vision_layers * per_slot_attn;
    }
    double p = (double)s->n_patches;
    double merged = p / (double)(f->merge_size * f->merge_size);
    return 2.0 * p * (f->vision_macs_per_row + f->patch_macs_per_row) + 2.0 * merged * f->merger_macs_per_row +
           4.0 * p * p * (double)f->vision_width * (double)f->vision_layers;
}

static double prefill_flops(const model_facts *f, const work_shape *s) {
    double n = (double)s->seq_len;
    return 2.0 * n * f->lm_macs_per_row + 4.0 * n * n * (double)f->lm_attn_width * (double)f->lm_layers;
}

/* ---- the machine ---- */

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#if defined(__APPLE__)
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* bytes on macOS */
#else
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
#endif
}

/* Current resident memory split into anonymous (activations, workspace) and file-backed (touched
 * weight pages) from /proc/self/status; zeros where that does not exist. */
static void current_rss_mib(double *anon, double *file) {
    *anon = *file = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long kib;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1) *anon = (double)kib / 1024.0;
        else if (sscanf(line, "RssFile: %ld kB", &kib) == 1) *file = (double)kib / 1024.0;
    }
    fclose(f);
}

static void first_line_of(const char *path, const char *prefix, char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (prefix && strncmp(line, prefix, strlen(prefix)) != 0) continue;
        char *value = line;
        if (prefix) {
            value = strchr(line, ':');
            if (!value) continue;
            value++;
        }
        while (*value == ' ' || *value == '\t') value++;
        size_t n = strcspn(value, "\n");
        if (n >= cap) n = cap - 1;
        memcpy(out, value, n);
        out[n] = 0;
        break;
    }
    fclose(f);
}

static void cpu_model_name(char *out, size_t cap) {
    first_line_of("/proc/cpuinfo", "model name", out, cap);
    if (strcmp(out, "unknown") == 0) first_line_of("/proc/cpuinfo", "Model", out, cap); /* Raspberry Pi */
}

static void load_average(char *out, size_t cap) {
    first_line_of("/proc/loadavg", NULL, out, cap);
    /* keep the three averages, drop the run-queue and pid fields */
    char *p = out;
    for (int spaces = 0; *p; p++)
        if (*p == ' ' && ++spaces == 3) {
            *p = 0;
            break;
        }
}

/* JSON string contents with the characters JSON requires escaped. */
static void json_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

static void json_string(FILE *f, const char *key, const char *value, const char *after) {
    fprintf(f, "\"%s\": \"", key);
    json_escaped(f, value);
    fprintf(f, "\"%s", after);
}

/* A deterministic image with some structure (smooth gradients plus a checkerboard). */
static uint8_t *make_image(int w, int h) {
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            int check = ((x / 32) + (y / 32)) & 1;
            p[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
            p[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
            p[2] = (uint8_t)(check ? 200 : 40);
        }
    return rgb;
}

static int parse_thread_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 256 || n == cap) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- measurement ---- */

typedef struct {
    int threads;
    double first_s;                       /* the warm-up run */
    double vision_s, prefill_s, embed_s;  /* best run each */
    double other_s;                       /* preprocessing, tokens, pooling, head: of the best whole run */
    double median_s;                      /* median whole run */
    double stage_s[MAX_STAGES];           /* best run per stage */
    double peak_rss_mib, anon_mib, file_mib;
} bench_row;

typedef struct {
    const char *model_path;
    const uint8_t *rgb;
    int width, height, runs;
    const char *text;
    bool quiet, no_image, multi_vector;
} bench_setup;

static bool measure(const abc_model *model, const bench_setup *b, int threads, stage_clock *sc, bench_row *row) {
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = threads;
    cp.on_stage = on_stage;
    cp.on_stage_user = sc;
    abc_context *ctx;
    abc_error err;
    if (abc_context_new(model, &cp, &ctx, &err) != ABC_OK) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return false;
    }
    abc_input in = abc_input_default();
    if (!b->no_image) {
        in.rgb = b->rgb;
        in.rgb_width = b->width;
        in.rgb_height = b->height;
    }
    in.text = b->text;
    in.role = ABC_ROLE_QUERY;
    size_t dim = (size_t)abc_model_embedding_dim(model), n_vectors = 1;
    /* a multi-vector model (colqwen2), or --multi-vector: abc_embed_multi, its [T, D] output sized by the size query */
    const bool multi = (dim == 0 || b->multi_vector) && abc_model_multi_vector_dim(model) > 0;
    if (b->multi_vector && !multi) {
        fprintf(stderr, "bench_model: --multi-vector: %s has no multi-vector output\n", b->model_path);
        abc_context_free(ctx);
        return false;
    }
    if (multi) {
        dim = (size_t)abc_model_multi_vector_dim(model);
        if (abc_embed_multi(ctx, &in, NULL, 0, &n_vectors) != ABC_OK) {
            fprintf(stderr, "bench_model: %s\n", abc_context_errmsg(ctx));
            abc_context_free(ctx);
            return false;
        }
    }
    float *vec = malloc(n_vectors * dim * sizeof *vec);
    double *totals = malloc((size_t)b->runs * sizeof *totals);
    bool ok = vec && totals;
    if (!ok) fprintf(stderr, "bench_model: out of memory\n");
    row->threads = threads;
    row->vision_s = row->prefill_s = row->embed_s = 1e300;
    for (int k = 0; k < MAX_STAGES; k++) row->stage_s[k] = 1e300;
    for (int r = -1; ok && r < b->runs; r++) { /* run −1 warms up */
        memset(sc->run_s, 0, sizeof sc->run_s);
        double start = now_s();
        sc->last = start;
        size_t got = 0;
        if ((multi ? abc_embed_multi(ctx, &in, vec, n_vectors * dim, &got) : abc_embed(ctx, &in, vec, dim)) != ABC_OK) {
            fprintf(stderr, "bench_model: %s\n", abc_context_errmsg(ctx));
            ok = false;
            break;
        }
        double total = now_s() - start;
        if (!b->quiet) fprintf(stderr, "  threads %d %s: %.3f s\n", threads, r < 0 ? "warm-up" : "run", total);
        if (r < 0) {
            row->first_s = total;
            continue;
        }
        totals[r] = total;
        double vision = 0, prefill = 0;
        for (int k = 0; k < sc->n_names; k++) {
            stage_part part = part_of(sc->names[k]);
            if (part == PART_VISION) vision += sc->run_s[k];
            else if (part == PART_PREFILL) prefill += sc->run_s[k];
            row->stage_s[k] = MIN(row->stage_s[k], sc->run_s[k]);
        }
        row->vision_s = MIN(row->vision_s, vision);
        row->prefill_s = MIN(row->prefill_s, prefill);
        if (total < row->embed_s) {
            row->embed_s = total;
            row->other_s = total - vision - prefill;
        }
    }
    if (ok) {
        qsort(totals, (size_t)b->runs, sizeof *totals, compare_doubles);
        row->median_s = b->runs % 2 ? totals[b->runs / 2] : 0.5 * (totals[b->runs / 2 - 1] + totals[b->runs / 2]);
        row->peak_rss_mib = peak_rss_mib();
        current_rss_mib(&row->anon_mib, &row->file_mib);
    }
    free(totals);
    free(vec);
    abc_context_free(ctx);
    return ok;
}

/* ---- short texts: one at a time vs one batch ---- */

/* Text i of n: 3 to 20 words from a small vocabulary, from a fixed-seed generator. */
static char **make_texts(int n) {
    static const char *const words[] = {
        "a", "the", "dog", "cat", "red", "small", "house", "river", "city", "photo", "of", "on", "with", "two",
        "people", "walking", "near", "old", "car", "blue", "sky", "table", "coffee", "book", "tree", "green",
        "mountain", "children", "playing", "football", "beach", "night", "light", "bridge", "train", "station",
        "market", "fresh", "bread", "woman", "man", "holding", "umbrella", "rain", "street", "window", "bird", "flying",
    };
    const int n_words = (int)(sizeof words / sizeof words[0]);
    char **texts = calloc((size_t)n, sizeof *texts);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; texts && i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        int count = 3 + (int)((state >> 33) % 18);
        char *t = texts[i] = malloc((size_t)count * 12 + 1);
        if (!t) break;
        t[0] = 0;
        for (int w = 0; w < count; w++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            if (w) strcat(t, " ");
            strcat(t, words[(state >> 33) % (uint64_t)n_words]);
        }
    }
    return texts;
}

typedef struct {
    int threads;
    double single_s, batch_s; /* best run each: all texts */
    int differing_rows;       /* batched rows not bit-identical to the single ones */
} texts_row;

static bool measure_texts(const abc_model *model, const bench_setup *b, char **texts, int n, int threads,
                          texts_row *row) {
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = threads;
    abc_context *ctx;
    abc_error err;
    if (abc_context_new(model, &cp, &ctx, &err) != ABC_OK) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return false;
    }
    const size_t dim = (size_t)abc_model_embedding_dim(model);
    abc_input *in = calloc((size_t)n, sizeof *in);
    float *single = malloc((size_t)n * dim * sizeof *single), *batch = malloc((size_t)n * dim * sizeof *batch);
    bool ok = in && single && batch;
    if (!ok) fprintf(stderr, "bench_model: out of memory\n");
    for (int i = 0; ok && i < n; i++) {
        in[i] = abc_input_default();
        in[i].text = texts[i];
        in[i].role = ABC_ROLE_CANDIDATE;
    }
    row->threads = threads;
    row->single_s = row->batch_s = 1e300;
    for (int r = -1; ok && r < b->runs; r++) { /* run −1 warms up (faults the weights in) on a few texts */
        const int count = r < 0 ? MIN(n, 4) : n;
        double t0 = now_s();
        for (int i = 0; ok && i < count; i++)
            if (abc_embed(ctx, &in[i], single + (size_t)i * dim, dim) != ABC_OK) {
                fprintf(stderr, "bench_model: text %d: %s\n", i, abc_context_errmsg(ctx));
                ok = false;
            }
        double t1 = now_s();
        if (ok && abc_embed_batch(ctx, in, (size_t)count, batch, NULL) != ABC_OK) {
            fprintf(stderr, "bench_model: batch: %s\n", abc_context_errmsg(ctx));
            ok = false;
        }
        double t2 = now_s();
        if (!ok) break;
        if (!b->quiet)
            fprintf(stderr, "  threads %d %s: one at a time %.3f s, batched %.3f s\n", threads, r < 0 ? "warm-up" : "run",
                    t1 - t0, t2 - t1);
        if (r < 0) continue;
        row->single_s = MIN(row->single_s, t1 - t0);
        row->batch_s = MIN(row->batch_s, t2 - t1);
    }
    row->differing_rows = 0;
    for (int i = 0; ok && i < n; i++)
        row->differing_rows += memcmp(single + (size_t)i * dim, batch + (size_t)i * dim, dim * sizeof(float)) != 0;
    free(in);
    free(single);
    free(batch);
    abc_context_free(ctx);
    return ok;
}

/* Tokens of the texts as the model sees them (template included), summed. */
static long long texts_tokens(const abc_model *model, char **texts, int n) {
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = 1;
    abc_context *ctx;
    abc_error err;
    long long total = 0;
    if (abc_context_new(model, &cp, &ctx, &err) != ABC_OK) return -1;
    for (int i = 0; i < n; i++) {
        abc_input in = abc_input_default();
        in.text = texts[i];
        in.role = ABC_ROLE_CANDIDATE;
        model_sequence seq = {0};
        if (prepare_input(ctx, &in, &seq) == ABC_OK) total += (long long)seq.ids.len;
        else total = -1;
        model_sequence_free(&seq);
        if (total < 0) break;
    }
    abc_context_free(ctx);
    return total;
}

/* ---- report ---- */

typedef struct {
    char cpu[256], isa[16], load_start[64], load_end[64];
    bool vnni, neon_dot;
    long online_cpus;
    double load_s, rss_after_load_mib;
} bench_env;

#define MIB (1024.0 * 1024.0)

static double rss_budget_mib(const model_facts *f) { return (1.15 * (double)f->file_bytes + 300e6) / MIB; }

/* base / t as a speed-up; 0 where there is nothing to compare (no vision tower in a text-only run). */
static double speedup(double base, double t) { return base > 0 && t > 0 ? base / t : 0; }

static double gflops(double flops, double s) { return flops > 0 && s > 0 && s < 1e299 ? flops / s * 1e-9 : 0; }

/* The row against which speed-ups are given: one thread if it was measured, else the first row. */
static const bench_row *baseline_row(const bench_row *rows, int n) {
    for (int i = 0; i < n; i++)
        if (rows[i].threads == 1) return &rows[i];
    return &rows[0];
}

static void print_json(const bench_setup *b, const bench_env *e, const model_facts *f, const stage_clock *sc,
                       const bench_row *rows, int n_rows) {
    const bench_row *base = baseline_row(rows, n_rows);
    double vf = vision_flops(f, &sc->shape), pf = prefill_flops(f, &sc->shape);
    printf("{\n  ");
    json_string(stdout, "model", b->model_path, ",\n  ");
    json_string(stdout, "architecture", f->architecture, ",\n  ");
    json_string(stdout, "preset", f->preset, ",\n  ");
    json_string(stdout, "dtype", f->dtype, ",\n  ");
    printf("\"file_bytes\": %llu,\n  \"tensor_bytes_by_dtype\": {", (unsigned long long)f->file_bytes);
    const char *sep = "";
    for (uint32_t d = 0; d < 8; d++)
        if (f->dtype_bytes[d]) {
            printf("%s\"%s\": %llu", sep, dtype_name(d), (unsigned long long)f->dtype_bytes[d]);
            sep = ", ";
        }
    printf("},\n  ");
    json_string(stdout, "cpu", e->cpu, ",\n  ");
    json_string(stdout, "isa", e->isa, ",\n  ");
    printf("\"vnni\": %s, \"neon_dot\": %s,\n  \"online_cpus\": %ld,\n  ", e->vnni ? "true" : "false",
           e->neon_dot ? "true" : "false", e->online_cpus);
    json_string(stdout, "compiler", __VERSION__, ",\n  ");
    json_string(stdout, "abc_version", ABC_VERSION_STRING, ",\n  ");
    json_string(stdout, "loadavg_start", e->load_start, ",\n  ");
    json_string(stdout, "loadavg_end", e->load_end, ",\n  ");
    if (b->no_image) printf("\"image\": null,\n  ");
    else printf("\"image\": [%d, %d],\n  ", b->width, b->height);
    printf("\"patches\": %lld,\n  \"clip_crops\": %lld,\n  \"image_tokens\": %lld,\n"
           "  \"sequence_tokens\": %lld,\n  \"vision_gflop\": %.1f,\n  \"prefill_gflop\": %.1f,\n"
           "  \"load_s\": %.4f,\n  \"rss_after_load_mib\": %.1f,\n  \"rss_budget_mib\": %.1f,\n  \"runs\": %d,\n"
           "  \"results\": [\n",
           (long long)sc->shape.n_patches, (long long)sc->shape.clip_slots,
           (long long)sc->shape.n_image_tokens, (long long)sc->shape.seq_len, vf * 1e-9, pf * 1e-9, e->load_s,
           e->rss_after_load_mib, rss_budget_mib(f), b->runs);
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        printf("    {\"threads\": %d, \"vision_s\": %.4f, \"prefill_s\": %.4f, \"other_s\": %.4f, \"embed_s\": %.4f, "
               "\"embed_median_s\": %.4f, \"first_embed_s\": %.4f, \"speedup\": %.3f, \"vision_speedup\": %.3f, "
               "\"prefill_speedup\": %.3f, \"vision_gflops\": %.1f, \"prefill_gflops\": %.1f, \"peak_rss_mib\": %.1f, "
               "\"rss_anon_mib\": %.1f, \"rss_file_mib\": %.1f, \"peak_rss_over_file\": %.3f, \"within_rss_budget\": %s,\n"
               "     \"stages_s\": {",
               r->threads, r->vision_s, r->prefill_s, r->other_s, r->embed_s, r->median_s, r->first_s,
               speedup(base->embed_s, r->embed_s), speedup(base->vision_s, r->vision_s),
               speedup(base->prefill_s, r->prefill_s),
               gflops(vf, r->vision_s), gflops(pf, r->prefill_s), r->peak_rss_mib, r->anon_mib, r->file_mib,
               r->peak_rss_mib * MIB / (double)f->file_bytes, r->peak_rss_mib <= rss_budget_mib(f) ? "true" : "false");
        for (int k = 0; k < sc->n_names; k++) printf("%s\"%s\": %.4f", k ? ", " : "", sc->names[k], r->stage_s[k]);
        printf("}}%s\n", i + 1 < n_rows ? "," : "");
    }
    printf("  ]\n}\n");
}

static void print_table(const bench_setup *b, const bench_env *e, const model_facts *f, const stage_clock *sc,
                        const bench_row *rows, int n_rows) {
    const bench_row *base = baseline_row(rows, n_rows);
    double vf = vision_flops(f, &sc->shape), pf = prefill_flops(f, &sc->shape);
    printf("model   %s: %s, preset %s, dtype %s, %.0f MiB\n", b->model_path, f->architecture, f->preset, f->dtype,
           (double)f->file_bytes / MIB);
    printf("cpu     %s, %ld online, kernels %s%s; load average %s at start, %s at end\n", e->cpu, e->online_cpus,
           e->isa, e->vnni ? " (vnni)" : e->neon_dot ? " (dot)" : "", e->load_start, e->load_end);
    if (b->no_image) printf("input   text only: %lld tokens", (long long)sc->shape.seq_len);
    else if (sc->shape.clip_slots > 0)
        printf("input   %dx%d image: %lld crops (with the global view), %lld image tokens, %lld tokens in all",
               b->width, b->height, (long long)sc->shape.clip_slots, (long long)sc->shape.n_image_tokens,
               (long long)sc->shape.seq_len);
    else
        printf("input   %dx%d image: %lld patches, %lld image tokens, %lld tokens in all", b->width, b->height,
               (long long)sc->shape.n_patches, (long long)sc->shape.n_image_tokens, (long long)sc->shape.seq_len);
    printf("; vision %.0f GFLOP, prefill %.0f GFLOP\n", vf * 1e-9, pf * 1e-9);
    printf("        load %.2f s; best of %d run%s after a warm-up; RSS after load %.0f MiB\n\n", e->load_s, b->runs,
           b->runs > 1 ? "s" : "", e->rss_after_load_mib);
    printf("%7s %9s %7s %10s %7s %8s %8s %9s %8s %8s\n", "threads", "vision s", "GFLOP/s", "prefill s", "GFLOP/s",
           "other s", "embed s", "median s", "speed-up", "first s");
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        printf("%7d %9.3f %7.1f %10.3f %7.1f %8.3f %8.3f %9.3f %7.2fx %8.3f\n", r->threads, r->vision_s,
               gflops(vf, r->vision_s), r->prefill_s, gflops(pf, r->prefill_s), r->other_s, r->embed_s, r->median_s,
               speedup(base->embed_s, r->embed_s), r->first_s);
    }
    double budget = rss_budget_mib(f);
    printf("\n%7s %13s %9s %9s %12s %s\n", "threads", "peak RSS MiB", "anon MiB", "file MiB", "peak / file",
           "budget 1.15 x file + 300 MB");
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        printf("%7d %13.0f %9.0f %9.0f %12.3f %.0f MiB: %s\n", r->threads, r->peak_rss_mib, r->anon_mib, r->file_mib,
               r->peak_rss_mib * MIB / (double)f->file_bytes, budget, r->peak_rss_mib <= budget ? "within" : "OVER");
    }
    printf("\n%-22s", "stage (best run), s");
    for (int i = 0; i < n_rows; i++) printf(" %8d", rows[i].threads);
    printf("  threads\n");
    for (int k = 0; k < sc->n_names; k++) {
        printf("%-22s", sc->names[k]);
        for (int i = 0; i < n_rows; i++) printf(" %8.3f", rows[i].stage_s[k]);
        printf("\n");
    }
}

static void print_texts(const bench_setup *b, const bench_env *e, const model_facts *f, int n, long long tokens,
                        const texts_row *rows, int n_rows, bool as_json) {
    if (as_json) {
        printf("{\n  ");
        json_string(stdout, "mode", "texts", ",\n  ");
        json_string(stdout, "model", b->model_path, ",\n  ");
        json_string(stdout, "architecture", f->architecture, ",\n  ");
        json_string(stdout, "preset", f->preset, ",\n  ");
        json_string(stdout, "dtype", f->dtype, ",\n  ");
        json_string(stdout, "cpu", e->cpu, ",\n  ");
        json_string(stdout, "isa", e->isa, ",\n  ");
        json_string(stdout, "loadavg_start", e->load_start, ",\n  ");
        json_string(stdout, "loadavg_end", e->load_end, ",\n  ");
        printf("\"texts\": %d,\n  \"tokens\": %lld,\n  \"runs\": %d,\n  \"results\": [\n", n, tokens, b->runs);
        for (int i = 0; i < n_rows; i++) {
            const texts_row *r = &rows[i];
            printf("    {\"threads\": %d, \"single_s\": %.4f, \"batch_s\": %.4f, \"single_texts_per_s\": %.3f, "
                   "\"batch_texts_per_s\": %.3f, \"speedup\": %.3f, \"differing_rows\": %d}%s\n",
                   r->threads, r->single_s, r->batch_s, n / r->single_s, n / r->batch_s, r->single_s / r->batch_s,
                   r->differing_rows, i + 1 < n_rows ? "," : "");
        }
        printf("  ]\n}\n");
        return;
    }
    printf("model   %s: %s, preset %s, dtype %s, %.0f MiB\n", b->model_path, f->architecture, f->preset, f->dtype,
           (double)f->file_bytes / MIB);
    printf("cpu     %s, %ld online, kernels %s%s; load average %s at start, %s at end\n", e->cpu, e->online_cpus,
           e->isa, e->vnni ? " (vnni)" : e->neon_dot ? " (dot)" : "", e->load_start, e->load_end);
    printf("input   %d texts of 3-20 words, %lld tokens in all (%.1f per text); best of %d run%s after a warm-up\n\n", n,
           tokens, n ? (double)tokens / n : 0.0, b->runs, b->runs > 1 ? "s" : "");
    printf("%7s %15s %16s %9s %s\n", "threads", "single texts/s", "batched texts/s", "speed-up", "rows identical");
    for (int i = 0; i < n_rows; i++) {
        const texts_row *r = &rows[i];
        printf("%7d %15.2f %16.2f %8.2fx %s\n", r->threads, n / r->single_s, n / r->batch_s, r->single_s / r->batch_s,
               r->differing_rows ? "NO" : "yes");
        if (r->differing_rows) printf("        %d of %d rows differ\n", r->differing_rows, n);
    }
}

static void usage(void) {
    fprintf(stderr, "usage: bench_model -m MODEL.abc [--threads 1,2,...] [--runs N] [--size WxH] [--text TEXT] "
                    "[--no-image] [--no-text] [--multi-vector] [--texts N] [--json] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv) {
    bench_setup b = {.text = "What is the person holding?", .width = 448, .height = 448, .runs = 1};
    int threads[MAX_THREAD_COUNTS] = {1, 2}, n_threads = 2;
    bool as_json = false;
    int n_texts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "-m") == 0 && has_value) b.model_path = argv[++i];
        else if (strcmp(a, "--threads") == 0 && has_value) {
            n_threads = parse_thread_list(argv[++i], threads, MAX_THREAD_COUNTS);
            if (n_threads < 1) usage();
        } else if (strcmp(a, "--runs") == 0 && has_value) {
            b.runs = atoi(argv[++i]);
            if (b.runs < 1 || b.runs > 1000) usage();
        } else if (strcmp(a, "--size") == 0 && has_value) {
            if (sscanf(argv[++i], "%dx%d", &b.width, &b.height) != 2 || b.width < 28 || b.height < 28 ||
                b.width > 8192 || b.height > 8192)
                usage();
        } else if (strcmp(a, "--text") == 0 && has_value) b.text = argv[++i];
        else if (strcmp(a, "--json") == 0) as_json = true;
        else if (strcmp(a, "--no-image") == 0) b.no_image = true;
        else if (strcmp(a, "--no-text") == 0) b.text = NULL;
        else if (strcmp(a, "--multi-vector") == 0) b.multi_vector = true;
        else if (strcmp(a, "--quiet") == 0) b.quiet = true;
        else if (strcmp(a, "--texts") == 0 && has_value) {
            n_texts = atoi(argv[++i]);
            if (n_texts < 1 || n_texts > 100000) usage();
        } else usage();
    }
    if (!b.model_path) usage();

    bench_env e;
    memset(&e, 0, sizeof e);
    load_average(e.load_start, sizeof e.load_start);
    model_facts facts;
    if (!read_model_facts(b.model_path, &facts)) return 1;

    abc_error err;
    abc_model *model;
    double t = now_s();
    if (abc_model_load(b.model_path, NULL, &model, &err) != ABC_OK) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return 1;
    }
    e.load_s = now_s() - t;
    e.rss_after_load_mib = peak_rss_mib();
    cpu_features features = cpu_features_detect();
    snprintf(e.isa, sizeof e.isa, "%s", kernel_path_name(kernel_path_best(&features)));
    e.vnni = features.avx512vnni;
    e.neon_dot = features.neon_dot;
    e.online_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_model_name(e.cpu, sizeof e.cpu);

    if (n_texts > 0) {
        char **texts = make_texts(n_texts);
        bool ok = texts != NULL;
        for (int i = 0; ok && i < n_texts; i++) ok = texts[i] != NULL;
        long long tokens = ok ? texts_tokens(model, texts, n_texts) : -1;
        if (!ok || tokens < 0) fprintf(stderr, "bench_model: cannot prepare the texts\n");
        ok = ok && tokens >= 0;
        texts_row trows[MAX_THREAD_COUNTS];
        for (int i = 0; i < n_threads && ok; i++) ok = measure_texts(model, &b, texts, n_texts, threads[i], &trows[i]);
        load_average(e.load_end, sizeof e.load_end);
        if (ok) print_texts(&b, &e, &facts, n_texts, tokens, trows, n_threads, as_json);
        for (int i = 0; texts && i < n_texts; i++) free(texts[i]);
        free(texts);
        abc_model_free(model);
        return ok ? 0 : 1;
    }

    uint8_t *rgb = make_image(b.width, b.height);
    if (!rgb) {
        fprintf(stderr, "bench_model: out of memory\n");
        abc_model_free(model);
        return 1;
    }
    b.rgb = rgb;
    if (!b.quiet)
        fprintf(stderr, "bench_model: %s (%s, %s), loaded in %.2f s\n", b.model_path, facts.architecture, facts.dtype,
                e.load_s);

    bench_row rows[MAX_THREAD_COUNTS];
    memset(rows, 0, sizeof rows);
    stage_clock sc;
    memset(&sc, 0, sizeof sc);
    bool ok = true;
    for (int i = 0; i < n_threads && ok; i++) ok = measure(model, &b, threads[i], &sc, &rows[i]);
    load_average(e.load_end, sizeof e.load_end);
    if (ok && as_json) print_json(&b, &e, &facts, &sc, rows, n_threads);
    else if (ok) print_table(&b, &e, &facts, &sc, rows, n_threads);
    free(rgb);
    abc_model_free(model);
    return ok ? 0 : 1;
}
