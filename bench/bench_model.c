/* bench_model — end-to-end speed of one embedding on a full-size model.
 *
 *   bench_model -m MODEL.abc [--threads 1,2,...] [--runs N] [--size WxH] [--text TEXT] [--json]
 *
 * Embeds a synthetic WxH RGB image (default 448×448: 1024 patches, 256 image tokens) with an
 * instruction, and times the stages through the public API's stage callback: the vision tower (up to
 * "vision_embeds"), the language-model prefill (up to "last_hidden") and the whole abc_embed call.
 * One untimed warm-up run per thread count faults the mapped weights in; then the best of --runs runs
 * is reported. Peak RSS (getrusage) includes the touched pages of the mapped weight file.
 * MODEL is a converted .abc file, e.g. of the synthetic checkpoints (make bench-model / bench-model-7b).
 *
 * Includes abc.c for the CPU-feature detection (the ISA path the kernels dispatch to).
 */
#include "../abc.c"

#include <sys/resource.h>
#include <time.h>

#define MAX_RUNS_THREADS 16
#define N_STAGES 8

static const char *const STAGE_NAMES[N_STAGES] = {"decoded",      "resized",       "pixel_values", "input_ids",
                                                  "position_ids", "vision_embeds", "last_hidden",  "embedding"};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Time spent in each stage: from the previous callback (or the start of abc_embed) to its own. */
typedef struct {
    double start, last;
    double stage_s[N_STAGES];
    int64_t seq_len, n_patches;
} stage_clock;

static int on_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                    const void *data) {
    (void)dtype;
    (void)data;
    stage_clock *c = user;
    double t = now_s();
    for (int k = 0; k < N_STAGES; k++)
        if (strcmp(name, STAGE_NAMES[k]) == 0) c->stage_s[k] += t - c->last;
    if (strcmp(name, "input_ids") == 0 && ndim >= 1) c->seq_len = shape[0];
    if (strcmp(name, "pixel_values") == 0 && ndim >= 1) c->n_patches = shape[0];
    c->last = t;
    return 0;
}

typedef struct {
    int threads;
    double vision_s, prefill_s, embed_s, other_s; /* best run each (other: preprocessing, tokens, head) */
    double peak_rss_mib;                          /* after this thread count's runs */
} bench_row;

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

static void cpu_model_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0 && strncmp(line, "Model", 5) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(out, cap, "%s", colon);
        break;
    }
    fclose(f);
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

static void usage(void) {
    fprintf(stderr, "usage: bench_model -m MODEL.abc [--threads 1,2,...] [--runs N] [--size WxH] [--text TEXT] [--json]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *text = "What is the person holding?";
    int threads[MAX_RUNS_THREADS] = {1, 2}, n_threads = 2, runs = 1, width = 448, height = 448, as_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "-m") == 0 && has_value) model_path = argv[++i];
        else if (strcmp(a, "--threads") == 0 && has_value) {
            n_threads = parse_thread_list(argv[++i], threads, MAX_RUNS_THREADS);
            if (n_threads < 1) usage();
        } else if (strcmp(a, "--runs") == 0 && has_value) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs > 1000) usage();
        } else if (strcmp(a, "--size") == 0 && has_value) {
            if (sscanf(argv[++i], "%dx%d", &width, &height) != 2 || width < 28 || height < 28 || width > 8192 ||
                height > 8192)
                usage();
        } else if (strcmp(a, "--text") == 0 && has_value) text = argv[++i];
        else if (strcmp(a, "--json") == 0) as_json = 1;
        else usage();
    }
    if (!model_path) usage();

    abc_error err;
    abc_model *model;
    double t_load = now_s();
    if (abc_model_load(model_path, NULL, &model, &err) != ABC_OK) {
        fprintf(stderr, "bench_model: %s\n", err.message);
        return 1;
    }
    t_load = now_s() - t_load;
    uint8_t *rgb = make_image(width, height);
    size_t dim = (size_t)abc_model_embedding_dim(model);
    float *vec = malloc(dim * sizeof *vec);
    if (!rgb || !vec) {
        fprintf(stderr, "bench_model: out of memory\n");
        return 1;
    }
    cpu_features features = cpu_features_detect();
    const char *isa = kernel_path_name(kernel_path_best(&features));
    char cpu[256];
    cpu_model_name(cpu, sizeof cpu);

    abc_input in = abc_input_default();
    in.rgb = rgb;
    in.rgb_width = width;
    in.rgb_height = height;
    in.text = text;
    in.role = ABC_ROLE_QUERY;

    bench_row rows[MAX_RUNS_THREADS];
    stage_clock sc;
    memset(&sc, 0, sizeof sc);
    int status = 0;
    for (int ti = 0; ti < n_threads && status == 0; ti++) {
        abc_context_params cp = abc_context_default_params();
        cp.n_threads = threads[ti];
        cp.on_stage = on_stage;
        cp.on_stage_user = &sc;
        abc_context *ctx;
        if (abc_context_new(model, &cp, &ctx, &err) != ABC_OK) {
            fprintf(stderr, "bench_model: %s\n", err.message);
            status = 1;
            break;
        }
        bench_row *row = &rows[ti];
        row->threads = threads[ti];
        row->vision_s = row->prefill_s = row->embed_s = row->other_s = 1e300;
        for (int r = -1; r < runs; r++) { /* run −1 warms up */
            memset(&sc, 0, sizeof sc);
            sc.start = sc.last = now_s();
            if (abc_embed(ctx, &in, vec, dim) != ABC_OK) {
                fprintf(stderr, "bench_model: %s\n", abc_context_errmsg(ctx));
                status = 1;
                break;
            }
            double total = now_s() - sc.start;
            if (!as_json)
                fprintf(stderr, "  threads %d %s: %.3f s\n", threads[ti], r < 0 ? "warm-up" : "run", total);
            if (r < 0) continue;
            double vision = sc.stage_s[5], prefill = sc.stage_s[6];
            if (vision < row->vision_s) row->vision_s = vision;
            if (prefill < row->prefill_s) row->prefill_s = prefill;
            if (total < row->embed_s) {
                row->embed_s = total;
                row->other_s = total - vision - prefill;
            }
        }
        row->peak_rss_mib = peak_rss_mib();
        abc_context_free(ctx);
    }

    if (status == 0 && as_json) {
        printf("{\n  \"model\": \"");
        json_escaped(stdout, model_path);
        printf("\",\n  \"preset\": \"");
        json_escaped(stdout, abc_model_preset(model));
        printf("\",\n  \"cpu\": \"");
        json_escaped(stdout, cpu);
        printf("\",\n  \"isa\": \"%s\",\n  \"online_cpus\": %ld,\n  \"image\": [%d, %d],\n  \"patches\": %lld,\n"
               "  \"sequence_tokens\": %lld,\n  \"load_s\": %.4f,\n  \"runs\": %d,\n  \"results\": [\n",
               isa, sysconf(_SC_NPROCESSORS_ONLN), width, height, (long long)sc.n_patches,
               (long long)sc.seq_len, t_load, runs);
        for (int ti = 0; ti < n_threads; ti++)
            printf("    {\"threads\": %d, \"vision_s\": %.4f, \"prefill_s\": %.4f, \"other_s\": %.4f, \"embed_s\": %.4f, "
                   "\"peak_rss_mib\": %.1f}%s\n",
                   rows[ti].threads, rows[ti].vision_s, rows[ti].prefill_s, rows[ti].other_s, rows[ti].embed_s,
                   rows[ti].peak_rss_mib, ti + 1 < n_threads ? "," : "");
        printf("  ]\n}\n");
    } else if (status == 0) {
        printf("model   %s (preset %s)\n", model_path, abc_model_preset(model));
        printf("cpu     %s, %ld online, kernels %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), isa);
        printf("input   %dx%d image: %lld patches, %lld image tokens, %lld tokens in all; load %.2f s; best of %d\n",
               width, height, (long long)sc.n_patches, (long long)sc.n_patches / 4, (long long)sc.seq_len,
               t_load, runs);
        printf("%7s %10s %12s %10s %10s %13s\n", "threads", "vision s", "LM prefill s", "other s", "embed s",
               "peak RSS MiB");
        for (int ti = 0; ti < n_threads; ti++)
            printf("%7d %10.3f %12.3f %10.3f %10.3f %13.0f\n", rows[ti].threads, rows[ti].vision_s, rows[ti].prefill_s,
                   rows[ti].other_s, rows[ti].embed_s, rows[ti].peak_rss_mib);
    }
    free(vec);
    free(rgb);
    abc_model_free(model);
    return status;
}
