/* bench.c — `abc bench`: the speed of one embedding on this machine, as a record others can compare.
 *
 * With --synth the model is built in memory (cli/bench_synth.c), so one binary is all a board needs.
 * Per thread count: one untimed warm-up embedding (its time is reported as the first result), then
 * --runs timed ones of a synthetic image + instruction; the stage callback splits each into the vision
 * tower (up to "vision_embeds") and the language-model prefill (up to "last_hidden"). Then text-only
 * embeddings of the instruction (a text candidate) for the embeddings/s figure. Every embedding is
 * checked finite and unit-length, so a broken kernel path cannot report a time.
 *
 * --compare reads records (--json output) and prints one table; --svg draws embedding time per row. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include "abc.h"
#include "common.h"
#include "model_convert/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef ABC_BUILD_FLAGS
#define ABC_BUILD_FLAGS "unknown"
#endif
#ifndef ABC_GIT_COMMIT
#define ABC_GIT_COMMIT "unknown"
#endif

#define MAX_THREAD_COUNTS 16
#define MAX_RUNS 1000

static void print_bench_usage(FILE *f) {
    fputs("usage: abc bench [--synth qwen2vl-2b|qwen2vl-7b|phi35v|tiny|tiny-phi3v | -m MODEL] [--preset abc|vlm2vec]\n"
          "                 [--dtype f32|f16|bf16|q8] [--threads 1,2,4] [--image WxH] [--tokens N] [--text-only]\n"
          "                 [--num-crops N] [--runs N] [--label TEXT] [--json|--md] [-o FILE]\n"
          "       abc bench --compare A.json B.json ... [--baseline N|B.json] [--svg CHART.svg]\n"
          "\n"
          "Times one embedding of a synthetic image (default 448x448) with an instruction of about --tokens\n"
          "tokens (default 16): vision tower, language-model prefill, whole embedding (best and median of\n"
          "--runs, default 3, after one warm-up), text-only embeddings per second, GFLOP/s and peak RSS, per\n"
          "thread count (default 1 and all CPUs).\n"
          "\n"
          "--synth builds the model in memory, in --dtype (default q8), from a fixed rule (deterministic,\n"
          "not trained weights; a synthetic byte-level vocabulary): no download, no file on disk. Preset abc\n"
          "(default) or vlm2vec. The sizes are Qwen2-VL-2B's and -7B's, and Phi-3.5-V's (phi35v, preset\n"
          "vlm2vec-phi3v, HD crops of 336x336: --num-crops N, default 4); tiny and tiny-phi3v are for tests.\n"
          "-m MODEL times a converted .abc file instead.\n"
          "\n"
          "--md (default) prints a Markdown table, --json one record (machine, build, run, results); -o FILE\n"
          "writes it to FILE (complete or not at all). --label names the machine in comparisons.\n"
          "--compare prints one table over records: rows machine x dtype x threads, speed-up over one thread\n"
          "and speed relative to record --baseline (a number, default 1, or one of the files) for the same\n"
          "work (model, preset, image); --svg also draws embedding time per row.\n"
          "ABC_KERNEL_PATH=avx2|scalar|... in the environment runs a slower kernel path this CPU supports.\n",
          f);
}

/* ---- the machine ---- */

typedef struct {
    char cpu[128], simd[128], kernel_path[16], l2[32], l3[32], compiler[128];
    int cores;
} machine_info;

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    size_t k = 0;
    while (s[k] == ' ' || s[k] == '\t') k++;
    memmove(s, s + k, strlen(s + k) + 1);
}

/* From abc_system_info: "abc V; kernels P; cpu features: F; cpus N; COMPILER". */
static void info_field(const char *info, const char *key, char *out, size_t cap) {
    const char *p = strstr(info, key);
    snprintf(out, cap, "unknown");
    if (!p) return;
    p += strlen(key);
    size_t n = strcspn(p, ";");
    snprintf(out, cap, "%.*s", (int)n, p);
    trim(out);
}

static void read_cache_sizes(machine_info *m) {
    for (int i = 0; i < 8; i++) {
        char path[96], level[16] = "", size[32] = "", type[32] = "";
        const char *fields[] = {"level", "size", "type"};
        char *outs[] = {level, size, type};
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, fields[k]);
            FILE *f = fopen(path, "r");
            if (!f) break;
            if (!fgets(outs[k], k == 0 ? (int)sizeof level : 32, f)) outs[k][0] = 0;
            fclose(f);
            trim(outs[k]);
        }
        if (strcmp(type, "Instruction") == 0) continue;
        if (strcmp(level, "2") == 0) snprintf(m->l2, sizeof m->l2, "%s", size);
        if (strcmp(level, "3") == 0) snprintf(m->l3, sizeof m->l3, "%s", size);
    }
}

static void machine_detect(machine_info *m) {
    memset(m, 0, sizeof *m);
    const char *info = abc_system_info();
    info_field(info, "kernels ", m->kernel_path, sizeof m->kernel_path);
    info_field(info, "cpu features:", m->simd, sizeof m->simd);
    const char *compiler = strrchr(info, ';');
    snprintf(m->compiler, sizeof m->compiler, "%s", compiler ? compiler + 1 : "unknown");
    trim(m->compiler);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (int)n : 1;
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    snprintf(m->l2, sizeof m->l2, "unknown");
    snprintf(m->l3, sizeof m->l3, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        /* x86: "model name"; Arm: "Model" (the board) or else implementer/part codes */
        char line[256], implementer[32] = "", part[32] = "", model[128] = "";
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            *colon = 0;
            char key[256];
            snprintf(key, sizeof key, "%s", line);
            trim(key);
            char *value = colon + 1;
            trim(value);
            if (strcmp(key, "model name") == 0 && strcmp(m->cpu, "unknown") == 0) snprintf(m->cpu, sizeof m->cpu, "%s", value);
            else if (strcmp(key, "Model") == 0 && !model[0]) snprintf(model, sizeof model, "%s", value);
            else if (strcmp(key, "CPU implementer") == 0 && !implementer[0]) snprintf(implementer, sizeof implementer, "%s", value);
            else if (strcmp(key, "CPU part") == 0 && !part[0]) snprintf(part, sizeof part, "%s", value);
        }
        fclose(f);
        if (model[0]) snprintf(m->cpu, sizeof m->cpu, "%s", model);
        else if (strcmp(m->cpu, "unknown") == 0 && implementer[0])
            snprintf(m->cpu, sizeof m->cpu, "arm implementer %s part %s", implementer, part);
    }
    read_cache_sizes(m);
}

/* ---- timing one embedding ---- */

typedef struct {
    double start, last, vision, prefill;
    int64_t seq_len, patches, image_tokens;
    int64_t views, view_px; /* phi3_v: pixel_values [views][3][view_px][view_px] (global view + crops) */
} stage_clock;

static int on_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                    const void *data) {
    (void)dtype;
    (void)data;
    stage_clock *c = user;
    const double t = cli_now();
    /* the vision side ends with vision_embeds (qwen2_vl) or, for phi3_v, is CLIP (clip_patch_features)
     * then the HD layout and projection (image_features) */
    const bool vision_end = strcmp(name, ABC_STAGE_VISION_EMBEDS) == 0 || strcmp(name, ABC_STAGE_IMAGE_FEATURES) == 0;
    if (vision_end || strcmp(name, ABC_STAGE_CLIP_FEATURES) == 0) c->vision += t - c->last;
    else if (strcmp(name, ABC_STAGE_LAST_HIDDEN) == 0) c->prefill += t - c->last;
    if (ndim >= 1 && strcmp(name, ABC_STAGE_INPUT_IDS) == 0) c->seq_len = shape[0];
    if (ndim == 2 && strcmp(name, ABC_STAGE_PIXEL_VALUES) == 0) c->patches = shape[0];
    if (ndim == 4 && strcmp(name, ABC_STAGE_PIXEL_VALUES) == 0) {
        c->views = shape[0];
        c->view_px = shape[2];
    }
    if (ndim >= 1 && vision_end) c->image_tokens = shape[0];
    c->last = t;
    return 0;
}

static int check_embedding(const float *v, int dim, char *err, size_t errlen) {
    double sum = 0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(v[i])) {
            snprintf(err, errlen, "the embedding has a non-finite value at %d", i);
            return -1;
        }
        sum += (double)v[i] * v[i];
    }
    if (fabs(sqrt(sum) - 1.0) > 1e-3) {
        snprintf(err, errlen, "the embedding's norm is %.6f, not 1", sqrt(sum));
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#if defined(__APPLE__)
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);
#else
    return (double)ru.ru_maxrss / 1024.0;
#endif
}

typedef struct {
    int threads;
    double vision_s, vision_median_s, prefill_s, prefill_median_s, embed_s, embed_median_s, first_s;
    double text_s, text_per_s, vision_gflops, prefill_gflops, peak_rss_mib;
} result_row;

typedef struct {
    const bench_synth_size *size; /* NULL for -m */
    const bench_synth_size *dims; /* the sizes that count FLOPs: size, or read from a qwen2_vl file (else NULL) */
    const char *model_path, *preset, *dtype, *label, *out_path;
    int threads[MAX_THREAD_COUNTS], n_threads;
    int width, height, tokens, runs, text_only, json, num_crops;
} bench_options;

/* FLOPs (2 per multiply-add) of the linear layers and attention, from the model's sizes. phi3_v:
 * CLIP over each view's patches + class token, then the projection of the HD layout's image tokens. */
static double vision_flops(const bench_synth_size *s, const stage_clock *c) {
    if (!s) return 0;
    if (s->phi3) {
        if (c->views <= 0 || s->v_patch <= 0) return 0;
        const double g = (double)(s->v_image / s->v_patch), T = g * g + 1, C = (double)s->v_embed,
                     I = (double)s->v_mlp, H = (double)s->hidden, pd = 3.0 * (double)(s->v_patch * s->v_patch);
        const double per_view = g * g * pd * C + (double)s->v_depth * (T * (4 * C * C + 2 * C * I) + 2 * T * T * C);
        return 2 * ((double)c->views * per_view + (double)c->image_tokens * (4 * C * H + H * H));
    }
    const int64_t patches = c->patches;
    if (patches <= 0) return 0;
    const double P = (double)patches, E = (double)s->v_embed, M = (double)s->v_mlp, H = (double)s->hidden;
    const double per_patch = 4 * E * E + 2 * E * M;
    return 2 * (P * 1176 * E + (double)s->v_depth * (P * per_patch + 2 * P * P * E) + P / 4 * (16 * E * E + 4 * E * H));
}

static double prefill_flops(const bench_synth_size *s, int64_t len) {
    if (!s || len <= 0) return 0;
    const double L = (double)len, H = (double)s->hidden, q = (double)(s->heads * s->head_dim),
                 kv = (double)(s->kv_heads * s->head_dim), I = (double)s->intermediate;
    return 2 * (double)s->layers * (L * (2 * H * q + 2 * H * kv + 3 * H * I) + 2 * L * L * q);
}

/* The sizes of a qwen2_vl or phi3_v model from abc_model_description (NULL for other architectures);
 * its weights' dtype into `dtype`. */
static const bench_synth_size *dims_from_description(const char *d, bench_synth_size *s, char *dtype, size_t cap) {
    const char *w = strstr(d, "weights ");
    if (w) {
        w += strlen("weights ");
        snprintf(dtype, cap, "%.*s", (int)strcspn(w, " \n,;"), w);
    }
    memset(s, 0, sizeof *s);
    int depth, embed, vheads, mlp, layers, hidden, heads, kv, head_dim, inter, patch = 0, image = 0;
    const char *v = strstr(d, "vision: "), *l = strstr(d, "language: ");
    if (!v || !l) return NULL;
    if (strncmp(d, "architecture: phi3_v", 20) == 0) {
        if (sscanf(v, "vision: CLIP, %d layers run, width %d, %d heads, mlp %d, patch %d, image %d", &depth, &embed,
                   &vheads, &mlp, &patch, &image) != 6 || patch < 1)
            return NULL;
        s->phi3 = 1;
        s->v_patch = patch;
        s->v_image = image;
    } else if (strncmp(d, "architecture: qwen2_vl", 22) != 0 ||
               sscanf(v, "vision: %d blocks, width %d, %d heads, mlp %d", &depth, &embed, &vheads, &mlp) != 4)
        return NULL;
    if (sscanf(l, "language: %d layers, hidden %d, %d heads (%d kv), head_dim %d, intermediate %d", &layers, &hidden,
               &heads, &kv, &head_dim, &inter) != 6)
        return NULL;
    s->name = "file";
    s->v_depth = depth;
    s->v_embed = embed;
    s->v_heads = vheads;
    s->v_mlp = mlp;
    s->layers = layers;
    s->hidden = hidden;
    s->heads = heads;
    s->kv_heads = kv;
    s->head_dim = head_dim;
    s->intermediate = inter;
    return s;
}

/* An instruction of at least `tokens` tokens from a fixed word list. */
static char *make_text(const abc_model *model, int tokens, int *n_tokens) {
    static const char *const words[] = {"what", "is", "the", "person", "in", "this", "picture", "holding", "and",
                                        "where", "are", "they", "standing", "near", "a", "large", "window"};
    size_t cap = 64, len = 0;
    char *text = malloc(cap);
    if (!text) return NULL;
    text[0] = 0;
    for (size_t w = 0;; w++) {
        size_t n = 0;
        abc_tokenize(model, text, len, NULL, 0, &n, NULL); /* cap 0: only counts (then it reports "too small") */
        if ((int)n >= tokens || len > (size_t)tokens * 16 + 64) {
            *n_tokens = (int)n;
            return text;
        }
        const char *word = words[w % (sizeof words / sizeof words[0])];
        if (len + strlen(word) + 2 > cap) {
            cap = 2 * (len + strlen(word) + 2);
            char *bigger = realloc(text, cap);
            if (!bigger) {
                free(text);
                return NULL;
            }
            text = bigger;
        }
        len += (size_t)sprintf(text + len, "%s%s", len ? " " : "", word);
    }
}

/* A deterministic test pattern: smooth gradients with some texture. */
static uint8_t *make_image(int w, int h) {
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            p[0] = (uint8_t)(255 * x / (w > 1 ? w - 1 : 1));
            p[1] = (uint8_t)(255 * y / (h > 1 ? h - 1 : 1));
            p[2] = (uint8_t)(((x / 8) ^ (y / 8)) * 37);
        }
    return rgb;
}

/* One timed embedding: its wall seconds into *t, the stage times in *clock; checked finite and unit-length. */
static int embed_once(abc_context *ctx, const abc_input *input, float *vec, int dim, stage_clock *clock, double *t,
                      char *err, size_t errlen) {
    memset(clock, 0, sizeof *clock);
    clock->start = clock->last = cli_now();
    abc_status st = abc_embed(ctx, input, vec, (size_t)dim);
    *t = cli_now() - clock->start;
    if (st != ABC_OK) {
        snprintf(err, errlen, "%s", abc_context_errmsg(ctx));
        return -1;
    }
    return check_embedding(vec, dim, err, errlen);
}

static int run_threads(const bench_options *o, const abc_model *model, int threads, const abc_input *img_input,
                       const abc_input *text_input, result_row *row, stage_clock *shape, char *err, size_t errlen) {
    abc_context_params cp = abc_context_default_params();
    cp.n_threads = threads;
    stage_clock clock;
    cp.on_stage = on_stage;
    cp.on_stage_user = &clock;
    abc_context *ctx = NULL;
    abc_error e;
    abc_status st = abc_context_new(model, &cp, &ctx, &e);
    if (st != ABC_OK) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    const int dim = abc_model_embedding_dim(model);
    float *vec = malloc((size_t)dim * sizeof *vec);
    double *vis = malloc((size_t)o->runs * sizeof(double) * 3);
    int rc = -1;
    if (!vec || !vis) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    double *pre = vis + o->runs, *tot = pre + o->runs;
    memset(row, 0, sizeof *row);
    row->threads = threads;
    if (!o->text_only) {
        for (int r = -1; r < o->runs; r++) { /* r = -1: the warm-up */
            double t;
            if (embed_once(ctx, img_input, vec, dim, &clock, &t, err, errlen) < 0) goto done;
            if (r < 0) {
                row->first_s = t;
                *shape = clock;
                if (shape->views > 0 && o->dims && o->dims->v_patch > 0) /* phi3_v: CLIP patches of every view */
                    shape->patches = shape->views * (shape->view_px / o->dims->v_patch) * (shape->view_px / o->dims->v_patch);
                continue;
            }
            vis[r] = clock.vision;
            pre[r] = clock.prefill;
            tot[r] = t;
        }
        row->vision_median_s = median(vis, o->runs);
        row->vision_s = vis[0];
        row->prefill_median_s = median(pre, o->runs);
        row->prefill_s = pre[0];
        row->embed_median_s = median(tot, o->runs);
        row->embed_s = tot[0];
        row->vision_gflops = row->vision_s > 0 ? vision_flops(o->dims, shape) / row->vision_s * 1e-9 : 0;
        row->prefill_gflops = row->prefill_s > 0 ? prefill_flops(o->dims, shape->seq_len) / row->prefill_s * 1e-9 : 0;
    }
    /* text only: warm-up, then --runs embeddings (at least 3: they are short) */
    const int n_text = o->runs < 3 ? 3 : o->runs;
    double text_total = 0;
    for (int r = -1; r < n_text; r++) {
        double t;
        if (embed_once(ctx, text_input, vec, dim, &clock, &t, err, errlen) < 0) goto done;
        if (r < 0) {
            if (o->text_only) {
                row->first_s = t;
                *shape = clock;
            }
            continue;
        }
        tot[r % o->runs] = t;
        text_total += t;
        if (o->text_only) {
            if (r < o->runs) pre[r] = clock.prefill;
        }
    }
    row->text_s = text_total / n_text;
    row->text_per_s = text_total > 0 ? n_text / text_total : 0;
    if (o->text_only) {
        row->embed_s = tot[0];
        row->embed_median_s = median(tot, o->runs);
        row->prefill_median_s = median(pre, o->runs);
        row->prefill_s = pre[0];
        row->prefill_gflops = row->prefill_s > 0 ? prefill_flops(o->dims, shape->seq_len) / row->prefill_s * 1e-9 : 0;
    }
    row->peak_rss_mib = peak_rss_mib();
    rc = 0;
done:
    free(vec);
    free(vis);
    abc_context_free(ctx);
    return rc;
}

/* The 1-minute load average (-1 where /proc/loadavg is missing): on a shared machine the times mean
 * little without it. */
static double load_average(void) {
    double la = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &la) != 1) la = -1;
        fclose(f);
    }
    return la;
}

/* ---- output ---- */

static void json_str(FILE *f, const char *s) { cli_json_string(f, s, strlen(s)); }

typedef struct {
    machine_info m;
    double build_s, load_s, model_bytes, load_avg, load_avg_end;
    int text_tokens, num_crops;
    stage_clock shape;
    char date[32], model[96];
} run_info;

static void write_json(FILE *f, const bench_options *o, const run_info *ri, const result_row *rows, int n) {
    fputs("{\n  \"abc_bench\": 1,\n  \"machine\": {\"label\": ", f);
    json_str(f, o->label ? o->label : "");
    fputs(", \"cpu\": ", f);
    json_str(f, ri->m.cpu);
    fprintf(f, ", \"cores\": %d, \"simd\": ", ri->m.cores);
    json_str(f, ri->m.simd);
    fputs(", \"kernel_path\": ", f);
    json_str(f, ri->m.kernel_path);
    fputs(", \"l2\": ", f);
    json_str(f, ri->m.l2);
    fputs(", \"l3\": ", f);
    json_str(f, ri->m.l3);
    fputs(", \"system_info\": ", f);
    json_str(f, abc_system_info());
    fputs("},\n  \"build\": {\"compiler\": ", f);
    json_str(f, ri->m.compiler);
    fputs(", \"flags\": ", f);
    json_str(f, ABC_BUILD_FLAGS);
    fputs(", \"abc_version\": ", f);
    json_str(f, abc_version());
    fputs(", \"git_commit\": ", f);
    json_str(f, ABC_GIT_COMMIT);
    fputs("},\n  \"run\": {\"model\": ", f);
    json_str(f, ri->model);
    fprintf(f, ", \"synthetic\": %s, \"dtype\": ", o->size ? "true" : "false");
    json_str(f, o->dtype);
    fputs(", \"preset\": ", f);
    json_str(f, o->preset);
    fprintf(f,
            ", \"image\": \"%s\", \"image_width\": %d, \"image_height\": %d, \"image_patches\": %lld, "
            "\"image_tokens\": %lld, \"sequence_tokens\": %lld, \"text_tokens\": %d, \"runs\": %d, \"date\": \"%s\", "
            "\"load_average\": %.2f, \"load_average_end\": %.2f",
            o->text_only ? "none" : "synthetic", o->text_only ? 0 : o->width, o->text_only ? 0 : o->height,
            (long long)ri->shape.patches, (long long)ri->shape.image_tokens, (long long)ri->shape.seq_len,
            ri->text_tokens, o->runs, ri->date, ri->load_avg, ri->load_avg_end);
    if (ri->num_crops) /* phi3_v: the crop budget and the views it gave (global + crops) */
        fprintf(f, ", \"num_crops\": %d, \"image_views\": %lld", ri->num_crops, (long long)ri->shape.views);
    fputs("},\n", f);
    fprintf(f, "  \"setup\": {\"build_s\": %.3f, \"load_s\": %.3f, \"model_bytes\": %.0f},\n  \"results\": [\n",
            ri->build_s, ri->load_s, ri->model_bytes);
    for (int i = 0; i < n; i++) {
        const result_row *r = &rows[i];
        fprintf(f,
                "    {\"threads\": %d, \"vision_s\": %.4f, \"vision_median_s\": %.4f, \"prefill_s\": %.4f, "
                "\"prefill_median_s\": %.4f, \"embed_s\": %.4f, \"embed_median_s\": %.4f, \"first_embed_s\": %.4f, "
                "\"text_embed_s\": %.4f, \"text_per_s\": %.3f, \"vision_gflops\": %.2f, \"prefill_gflops\": %.2f, "
                "\"peak_rss_mib\": %.1f, \"speedup\": %.3f}%s\n",
                r->threads, r->vision_s, r->vision_median_s, r->prefill_s, r->prefill_median_s, r->embed_s,
                r->embed_median_s, r->first_s, r->text_s, r->text_per_s, r->vision_gflops, r->prefill_gflops,
                r->peak_rss_mib, r->embed_s > 0 ? rows[0].embed_s / r->embed_s : 0, i + 1 < n ? "," : "");
    }
    fputs("  ]\n}\n", f);
}

static void write_md(FILE *f, const bench_options *o, const run_info *ri, const result_row *rows, int n) {
    fprintf(f, "%s, kernels %s, %d cores, L2 %s, L3 %s; %s; abc %s (%s)\n", ri->m.cpu, ri->m.kernel_path, ri->m.cores,
            ri->m.l2, ri->m.l3, ri->m.compiler, abc_version(), ABC_GIT_COMMIT);
    fprintf(f, "model %s (%.2f GB), preset %s, built in %.2f s, loaded in %.3f s; ", ri->model, ri->model_bytes / 1e9,
            o->preset, ri->build_s, ri->load_s);
    if (o->text_only) fprintf(f, "text only, %lld tokens", (long long)ri->shape.seq_len);
    else if (ri->num_crops)
        fprintf(f, "image %dx%d (num_crops %d: %lld views of %lldx%lld, %lld patches, %lld image tokens), %lld tokens",
                o->width, o->height, ri->num_crops, (long long)ri->shape.views, (long long)ri->shape.view_px,
                (long long)ri->shape.view_px, (long long)ri->shape.patches, (long long)ri->shape.image_tokens,
                (long long)ri->shape.seq_len);
    else
        fprintf(f, "image %dx%d (%lld patches, %lld image tokens), %lld tokens", o->width, o->height,
                (long long)ri->shape.patches, (long long)ri->shape.image_tokens, (long long)ri->shape.seq_len);
    fprintf(f, "; best | median of %d runs after a warm-up; load average %.2f at the start, %.2f at the end\n\n",
            o->runs, ri->load_avg, ri->load_avg_end);
    fputs("| model | dtype | threads | vision s | prefill s | embed s | first s | text emb/s | vision GFLOP/s | "
          "prefill GFLOP/s | peak RSS MiB | speed-up |\n"
          "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
          f);
    for (int i = 0; i < n; i++) {
        const result_row *r = &rows[i];
        fprintf(f,
                "| %s | %s | %d | %.3f \\| %.3f | %.3f \\| %.3f | %.3f \\| %.3f | %.3f | %.2f | %.1f | %.1f | %.0f | "
                "%.2fx |\n",
                ri->model, o->dtype, r->threads, r->vision_s, r->vision_median_s, r->prefill_s, r->prefill_median_s,
                r->embed_s, r->embed_median_s, r->first_s, r->text_per_s, r->vision_gflops, r->prefill_gflops,
                r->peak_rss_mib, r->embed_s > 0 ? rows[0].embed_s / r->embed_s : 0);
    }
}

/* Writes through a memory stream, then to `path` atomically, or to stdout when path is NULL. */
static int emit(const char *path, char *text, size_t len) {
    if (!path) {
        fwrite(text, 1, len, stdout);
        if (fflush(stdout) != 0 || ferror(stdout)) return cli_report(ABC_ERR_IO, "cannot write to standard output");
        return 0;
    }
    char err[256];
    if (cli_write_file_atomic(path, text, len, err, sizeof err) != 0) return cli_report(ABC_ERR_IO, "%s", err);
    return 0;
}

static bool parse_size(const char *v, int *w, int *h) {
    char *end;
    long a = strtol(v, &end, 10);
    if (end == v || (*end != 'x' && *end != 'X')) return false;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || a < 1 || b < 1 || a > 16384 || b > 16384) return false;
    *w = (int)a;
    *h = (int)b;
    return true;
}

static bool parse_threads(const char *v, bench_options *o) {
    o->n_threads = 0;
    const char *p = v;
    while (*p) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 1 || t > 1024 || o->n_threads == MAX_THREAD_COUNTS) return false;
        for (int i = 0; i < o->n_threads; i++)
            if (o->threads[i] == t) return false; /* a repeated count would only repeat a row */
        o->threads[o->n_threads++] = (int)t;
        if (*end == ',' && end[1]) end++;
        else if (*end) return false;
        p = end;
    }
    return o->n_threads > 0;
}

static int cmd_compare(int n_files, char **files, int baseline, const char *baseline_file, const char *svg_path);

int cmd_bench(int argc, char **argv) {
    bench_options o = {.preset = "abc", .dtype = "q8", .width = 448, .height = 448, .tokens = 16, .runs = 3};
    const char *svg = NULL;
    char **compare = NULL;
    int n_compare = 0, baseline = 1, dtype_given = 0, preset_given = 0;
    const char *baseline_file = NULL;
    cli_args c = {argc, argv, 1, false};
    /* an option missing its value is reported by cli_take, then matches nothing (c.bad ends the loop) */
#define TAKE(name, alias) (cli_take(&c, name, alias, &v) && !c.bad)
    for (; c.i < argc; c.i++) {
        const char *a = argv[c.i], *v = NULL;
        long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_bench_usage(stdout);
            free(compare);
            return CLI_EXIT_OK;
        } else if (TAKE("--synth", NULL)) {
            if (!(o.size = bench_synth_find(v))) {
                free(compare);
                return cli_usage_error("--synth must be qwen2vl-2b, qwen2vl-7b, phi35v, tiny or tiny-phi3v, not '%s'", v);
            }
        } else if (TAKE("-m", "--model")) o.model_path = v;
        else if (TAKE("--preset", NULL)) o.preset = v, preset_given = 1;
        else if (TAKE("--dtype", NULL)) o.dtype = v, dtype_given = 1;
        else if (TAKE("--label", NULL)) o.label = v;
        else if (TAKE("-o", "--output")) o.out_path = v;
        else if (TAKE("--svg", NULL)) svg = v;
        else if (TAKE("--threads", "-t")) {
            if (!parse_threads(v, &o)) {
                free(compare);
                return cli_usage_error("--threads must be a list like 1,2,4 (1..1024, distinct, at most %d), not '%s'",
                                       MAX_THREAD_COUNTS, v);
            }
        } else if (TAKE("--image", NULL)) {
            if (!parse_size(v, &o.width, &o.height)) {
                free(compare);
                return cli_usage_error("--image must be WxH (1..16384 each), not '%s'", v);
            }
        } else if (TAKE("--tokens", NULL)) {
            if (!cli_parse_long(v, 1, 100000, &n)) {
                free(compare);
                return cli_usage_error("--tokens must be an integer from 1 to 100000, not '%s'", v);
            }
            o.tokens = (int)n;
        } else if (TAKE("--num-crops", NULL)) {
            if (!cli_parse_long(v, 1, 4096, &n)) {
                free(compare);
                return cli_usage_error("--num-crops must be an integer from 1 to 4096, not '%s'", v);
            }
            o.num_crops = (int)n;
        } else if (TAKE("--runs", NULL)) {
            if (!cli_parse_long(v, 1, MAX_RUNS, &n)) {
                free(compare);
                return cli_usage_error("--runs must be an integer from 1 to %d, not '%s'", MAX_RUNS, v);
            }
            o.runs = (int)n;
        } else if (TAKE("--baseline", NULL)) {
            /* a number, or one of the records by name (stays right when records are added to a folder) */
            if (cli_parse_long(v, 1, 100000, &n)) baseline = (int)n, baseline_file = NULL;
            else if (v[0] >= '0' && v[0] <= '9') {
                free(compare);
                return cli_usage_error("--baseline must be a record number from 1 or a record's file, not '%s'", v);
            } else baseline_file = v;
        } else if (strcmp(a, "--text-only") == 0) o.text_only = 1;
        else if (strcmp(a, "--json") == 0) o.json = 1;
        else if (strcmp(a, "--md") == 0) o.json = 0;
        else if (strcmp(a, "--compare") == 0) {
            /* every following argument that is not an option is a record */
            free(compare);
            compare = malloc((size_t)argc * sizeof *compare);
            if (!compare) return cli_report(ABC_ERR_NOMEM, "out of memory");
            n_compare = 0;
            while (c.i + 1 < argc && argv[c.i + 1][0] != '-') compare[n_compare++] = argv[++c.i];
            if (n_compare == 0) {
                free(compare);
                return cli_usage_error("--compare needs at least one record (A.json ...)");
            }
        } else {
            if (c.bad) break;
            free(compare);
            return cli_usage_error("bench: unknown %s '%s'", a[0] == '-' ? "option" : "argument", a);
        }
        if (c.bad) break;
    }
#undef TAKE
    if (c.bad) {
        free(compare);
        return CLI_EXIT_USAGE;
    }
    if (compare) {
        int rc = cmd_compare(n_compare, compare, baseline, baseline_file, svg);
        free(compare);
        return rc;
    }
    if (svg) return cli_usage_error("--svg goes with --compare");
    if (!o.size == !o.model_path) return cli_usage_error("bench: give one of --synth NAME and -m MODEL");
    if (o.size && strcmp(o.dtype, "f32") != 0 && strcmp(o.dtype, "f16") != 0 && strcmp(o.dtype, "bf16") != 0 &&
        strcmp(o.dtype, "q8") != 0)
        return cli_usage_error("--dtype must be f32, f16, bf16 or q8, not '%s'", o.dtype);
    if (o.size && o.size->phi3) {
        if (!preset_given) o.preset = "vlm2vec-phi3v";
        if (strcmp(o.preset, "vlm2vec-phi3v") != 0)
            return cli_usage_error("--synth %s has preset vlm2vec-phi3v, not '%s'", o.size->name, o.preset);
    } else if (o.size && strcmp(o.preset, "abc") != 0 && strcmp(o.preset, "vlm2vec") != 0)
        return cli_usage_error("--synth %s has preset abc or vlm2vec, not '%s'", o.size->name, o.preset);
    if (o.size && !o.size->phi3 && o.num_crops)
        return cli_usage_error("--num-crops goes with phi3_v models (--synth phi35v), not %s", o.size->name);
    if (o.model_path && (dtype_given || preset_given))
        return cli_usage_error("--dtype and --preset go with --synth (a model file has its own)");
    if (o.n_threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads[o.n_threads++] = 1;
        if (cpus > 1) o.threads[o.n_threads++] = (int)(cpus > 1024 ? 1024 : cpus);
    }

    run_info ri;
    memset(&ri, 0, sizeof ri);
    machine_detect(&ri.m);
    {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ri.date, sizeof ri.date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        ri.load_avg = load_average();
    }
    bench_synth_size file_dims;
    char file_dtype[16] = "?";
    o.dims = o.size;
    const double t0 = cli_now();
    void *image = NULL;
    size_t image_size = 0;
    abc_model *model = NULL;
    abc_error e;
    abc_status st;
    abc_model_params params = abc_model_default_params();
    params.num_crops = o.num_crops;
    int max_threads = 1;
    for (int i = 0; i < o.n_threads; i++) max_threads = o.threads[i] > max_threads ? o.threads[i] : max_threads;
    if (o.size) {
        char err[256];
        fprintf(stderr, "abc bench: building %s (%s, preset %s) in memory...\n", o.size->name, o.dtype, o.preset);
        if (bench_synth_build(o.size, o.preset, o.dtype, max_threads, &image, &image_size, err, sizeof err) < 0)
            return cli_report(ABC_ERR_NOMEM, "%s", err);
        ri.build_s = cli_now() - t0;
        snprintf(ri.model, sizeof ri.model, "%s synthetic", o.size->name);
        ri.model_bytes = (double)image_size;
        const double t1 = cli_now();
        st = abc_model_load_from_memory(image, image_size, &params, &model, &e);
        ri.load_s = cli_now() - t1;
    } else {
        const double t1 = cli_now();
        st = abc_model_load(o.model_path, &params, &model, &e);
        ri.load_s = cli_now() - t1;
        const char *base = strrchr(o.model_path, '/');
        snprintf(ri.model, sizeof ri.model, "%s", base ? base + 1 : o.model_path);
        FILE *f = fopen(o.model_path, "rb");
        if (f) {
            if (fseek(f, 0, SEEK_END) == 0) ri.model_bytes = (double)ftell(f);
            fclose(f);
        }
        if (model) {
            o.preset = abc_model_preset(model);
            o.dims = dims_from_description(abc_model_description(model), &file_dims, file_dtype, sizeof file_dtype);
            o.dtype = file_dtype;
        }
    }
    if (st != ABC_OK) {
        free(image);
        return cli_report(st, "%s", e.message);
    }
    /* phi3_v: the crop budget in effect (the file's, or --num-crops) */
    const char *hd = strstr(abc_model_description(model), "HD transform with ");
    if (!hd || sscanf(hd, "HD transform with %d crops", &ri.num_crops) != 1) ri.num_crops = 0;
    if (o.num_crops && !ri.num_crops) {
        abc_model_free(model);
        return cli_usage_error("--num-crops goes with phi3_v models; %s is not one", o.model_path);
    }

    int rc = CLI_EXIT_FAILED;
    uint8_t *rgb = NULL;
    char *text = make_text(model, o.tokens, &ri.text_tokens);
    result_row rows[MAX_THREAD_COUNTS];
    char *out = NULL;
    size_t out_len = 0;
    if (!text || (!o.text_only && !(rgb = make_image(o.width, o.height)))) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
        goto done;
    }
    abc_input img_input = abc_input_default(), text_input = abc_input_default();
    img_input.rgb = rgb;
    img_input.rgb_width = o.width;
    img_input.rgb_height = o.height;
    img_input.text = text;
    text_input.text = text;
    text_input.role = ABC_ROLE_CANDIDATE;
    for (int i = 0; i < o.n_threads; i++) {
        char err[512];
        stage_clock shape;
        fprintf(stderr, "abc bench: %d thread%s...\n", o.threads[i], o.threads[i] > 1 ? "s" : "");
        if (run_threads(&o, model, o.threads[i], &img_input, &text_input, &rows[i], &shape, err, sizeof err) < 0) {
            rc = cli_report(ABC_ERR_INTERNAL, "%d threads: %s", o.threads[i], err);
            goto done;
        }
        if (i == 0) ri.shape = shape;
        if (i == 0) fprintf(stderr, "abc bench: first result after %.2f s\n", cli_now() - t0);
    }
    ri.load_avg_end = load_average();
    FILE *f = open_memstream(&out, &out_len);
    if (!f) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (o.json) write_json(f, &o, &ri, rows, o.n_threads);
    else write_md(f, &o, &ri, rows, o.n_threads);
    if (fclose(f) != 0) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = emit(o.out_path, out, out_len) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
done:
    free(out);
    free(text);
    free(rgb);
    abc_model_free(model);
    free(image);
    return rc;
}

/* ---- --compare ---- */

typedef struct {
    json_value *root;
    const char *path;
    char machine[160];
    const char *dtype, *model;
} record;

static const json_value *jpath(const json_value *v, const char *a, const char *b) {
    v = json_get(v, a);
    return b ? json_get(v, b) : v;
}

static const char *jstr(const json_value *v, const char *a, const char *b, const char *dflt) {
    v = jpath(v, a, b);
    return v && v->type == JSON_STRING ? v->string : dflt;
}

static double jnum(const json_value *v, const char *key) {
    v = json_get(v, key);
    return v && v->type == JSON_NUMBER ? v->number : 0;
}

/* The record's row for `threads`, or NULL. */
static const json_value *row_for(const record *r, int threads) {
    const json_value *res = json_get(r->root, "results");
    for (size_t i = 0; res && res->type == JSON_ARRAY && i < res->n_items; i++)
        if ((int)jnum(&res->items[i], "threads") == threads) return &res->items[i];
    return NULL;
}

static void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* A record's run as a short text: "preset WxH" (+ crops), or "preset text only". */
static void run_text(const record *r, char *out, size_t cap) {
    const json_value *w = jpath(r->root, "run", "image_width"), *h = jpath(r->root, "run", "image_height"),
                     *crops = jpath(r->root, "run", "num_crops");
    const char *preset = jstr(r->root, "run", "preset", "?");
    if (w && h && w->type == JSON_NUMBER && h->type == JSON_NUMBER && w->number > 0) {
        if (crops && crops->type == JSON_NUMBER)
            snprintf(out, cap, "%s %dx%d, num_crops %d", preset, (int)w->number, (int)h->number, (int)crops->number);
        else snprintf(out, cap, "%s %dx%d", preset, (int)w->number, (int)h->number);
    } else snprintf(out, cap, "%s text only", preset);
}

/* Characters of UTF-8 text (for the label column's width). */
static int text_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Whether records a and b timed the same work (model and run), so that their times compare. */
static bool same_work(const record *a, const record *b) {
    char ra[96], rb[96];
    run_text(a, ra, sizeof ra);
    run_text(b, rb, sizeof rb);
    return strcmp(a->model, b->model) == 0 && strcmp(ra, rb) == 0;
}

/* A horizontal bar per (record, threads) row: embedding time, colour by dtype; the run (model, preset,
 * image) joins the label when the records differ in it, and bars share a scale only with rows of the
 * same work (a 112x112 run beside a 448x448 one would be a sliver); each bar ends with the run's load
 * average. */
static void write_svg(FILE *f, const record *recs, int n) {
    static const struct { const char *dtype, *colour; } colours[] = {
        {"q8", "#2b8cbe"}, {"f32", "#e6550d"}, {"f16", "#31a354"}, {"bf16", "#756bb1"}};
    int rows = 0, same_model = 1, same_run = 1, label_chars = 0;
    char run0[96], run[96];
    run_text(&recs[0], run0, sizeof run0);
    for (int i = 0; i < n; i++) {
        const json_value *res = json_get(recs[i].root, "results");
        rows += res ? (int)res->n_items : 0;
        run_text(&recs[i], run, sizeof run);
        same_model &= strcmp(recs[i].model, recs[0].model) == 0;
        same_run &= strcmp(run, run0) == 0;
    }
    for (int i = 0; i < n; i++) {
        run_text(&recs[i], run, sizeof run);
        int c = text_chars(recs[i].machine) + text_chars(" · q8 · 16t (text)");
        if (!same_model) c += text_chars(recs[i].model) + 3;
        if (!same_run) c += text_chars(run) + 3;
        if (c > label_chars) label_chars = c;
    }
    /* about 7 px per character at 13 px sans-serif */
    const int bar_h = 22, gap = 6, group_gap = 10, left = label_chars * 7 + 24, plot_w = 520, right = 200;
    const int width = left + plot_w + right, top = 56;
    int works = 1; /* a rule and more space between rows of different work */
    for (int i = 1; i < n; i++) works += !same_work(&recs[i - 1], &recs[i]);
    const int work_gap = 16;
    const int height = top + rows * (bar_h + gap) + (n - 1) * group_gap + (works - 1) * work_gap + 44;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">abc bench: one embedding (image + "
            "instruction), seconds, lower is better</text>\n",
            width, height, width, height, 10);
    /* legend: the dtypes present */
    int lx = left;
    for (size_t c = 0; c < sizeof colours / sizeof colours[0]; c++) {
        int present = 0;
        for (int i = 0; i < n; i++) present |= strcmp(recs[i].dtype, colours[c].dtype) == 0;
        if (!present) continue;
        fprintf(f, "<rect x=\"%d\" y=\"32\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"43\">%s</text>\n",
                lx, colours[c].colour, lx + 16, colours[c].dtype);
        lx += 70;
    }
    if (same_run || same_model) {
        /* what every bar shares goes under the title once */
        fputs("<text x=\"10\" y=\"43\" fill=\"#555555\">", f);
        if (same_model) svg_escape(f, recs[0].model);
        if (same_run) {
            fputs(same_model ? ", " : "", f);
            svg_escape(f, run0);
        }
        fputs("</text>\n", f);
    }
    int y = top;
    for (int i = 0; i < n; i++) {
        const json_value *res = json_get(recs[i].root, "results");
        const char *colour = "#636363";
        if (i > 0 && !same_work(&recs[i - 1], &recs[i])) {
            fprintf(f, "<line x1=\"10\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#bbbbbb\"/>\n", y - group_gap / 2 + work_gap / 2,
                    width - 10, y - group_gap / 2 + work_gap / 2);
            y += work_gap;
        }
        for (size_t c = 0; c < sizeof colours / sizeof colours[0]; c++)
            if (strcmp(recs[i].dtype, colours[c].dtype) == 0) colour = colours[c].colour;
        const json_value *la = jpath(recs[i].root, "run", "load_average"),
                         *le = jpath(recs[i].root, "run", "load_average_end");
        char load[48] = "";
        if (la && la->type == JSON_NUMBER && la->number >= 0) {
            if (le && le->type == JSON_NUMBER && le->number >= 0)
                snprintf(load, sizeof load, "(load %.1f-%.1f)", la->number, le->number);
            else snprintf(load, sizeof load, "(load %.1f)", la->number);
        }
        run_text(&recs[i], run, sizeof run);
        double max_s = 0;
        for (int j = 0; j < n; j++) {
            const json_value *other = json_get(recs[j].root, "results");
            for (size_t k = 0; other && same_work(&recs[i], &recs[j]) && k < other->n_items; k++)
                if (jnum(&other->items[k], "embed_s") > max_s) max_s = jnum(&other->items[k], "embed_s");
        }
        for (size_t k = 0; res && k < res->n_items; k++) {
            const double s = jnum(&res->items[k], "embed_s");
            const int w = max_s > 0 ? (int)(plot_w * s / max_s + 0.5) : 0;
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 8, y + bar_h - 6);
            svg_escape(f, recs[i].machine);
            if (!same_model) {
                fputs(" · ", f);
                svg_escape(f, recs[i].model);
            }
            if (!same_run) {
                fputs(" · ", f);
                svg_escape(f, run);
            }
            fprintf(f, " · %s · %dt%s</text>\n", recs[i].dtype, (int)jnum(&res->items[k], "threads"),
                    jnum(&res->items[k], "vision_s") > 0 ? "" : " (text)");
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", left, y, w > 0 ? w : 1,
                    bar_h, colour);
            /* xml:space: else renderers drop the space before the tspan */
            fprintf(f, "<text x=\"%d\" y=\"%d\" xml:space=\"preserve\">%.2f s <tspan fill=\"#555555\">%s</tspan></text>\n", left + w + 6,
                    y + bar_h - 6, s, load);
            y += bar_h + gap;
        }
        y += group_gap;
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top - 4, left, y - group_gap);
    fprintf(f, "<text x=\"10\" y=\"%d\" fill=\"#555555\">load: the machine's load average at the start (-end) of the run%s</text>\n</svg>\n",
            y - group_gap + 26, same_run && same_model ? "" : "; bars are to scale among rows of the same model and run");
}

static int cmd_compare(int n_files, char **files, int baseline, const char *baseline_file, const char *svg_path) {
    if (baseline_file) {
        baseline = 0;
        for (int i = 0; i < n_files && !baseline; i++)
            if (strcmp(files[i], baseline_file) == 0) baseline = i + 1;
        if (!baseline) return cli_usage_error("--baseline %s is not one of the records compared", baseline_file);
    }
    if (baseline > n_files) return cli_usage_error("--baseline %d: only %d records given", baseline, n_files);
    record *recs = calloc((size_t)n_files, sizeof *recs);
    int rc = CLI_EXIT_FAILED;
    char *out = NULL;
    size_t out_len = 0;
    if (!recs) return cli_report(ABC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_files; i++) {
        char *data = NULL, err[256];
        size_t size;
        if (cli_read_file(files[i], &data, &size, err, sizeof err) != 0) {
            rc = cli_report(ABC_ERR_IO, "%s", err);
            goto done;
        }
        recs[i].root = json_parse(data, size, err, sizeof err);
        free(data);
        recs[i].path = files[i];
        const json_value *res = json_get(recs[i].root, "results");
        if (!recs[i].root || !json_get(recs[i].root, "abc_bench") || !res || res->type != JSON_ARRAY) {
            rc = cli_report(ABC_ERR_INVALID_ARG, "%s: not an abc bench record%s%s", files[i], recs[i].root ? "" : ": ",
                            recs[i].root ? "" : err);
            goto done;
        }
        const char *label = jstr(recs[i].root, "machine", "label", "");
        if (label[0]) snprintf(recs[i].machine, sizeof recs[i].machine, "%s", label);
        else
            snprintf(recs[i].machine, sizeof recs[i].machine, "%s (%s)", jstr(recs[i].root, "machine", "cpu", "?"),
                     jstr(recs[i].root, "machine", "kernel_path", "?"));
        recs[i].dtype = jstr(recs[i].root, "run", "dtype", "?");
        recs[i].model = jstr(recs[i].root, "run", "model", "?");
    }
    /* rows of the same work together (in the order each work first appears), so that what compares
     * stands together in the table and on one scale in the chart */
    const json_value *base_root = recs[baseline - 1].root;
    for (int i = 1; i < n_files; i++) {
        int first = 0; /* the first record of i's work */
        while (!same_work(&recs[first], &recs[i])) first++;
        int at = i; /* after the last record of that work before i */
        while (at > first + 1 && !same_work(&recs[at - 1], &recs[i])) at--;
        if (first < i && at < i) {
            record moved = recs[i];
            memmove(&recs[at + 1], &recs[at], (size_t)(i - at) * sizeof *recs);
            recs[at] = moved;
        }
    }
    for (int i = 0; i < n_files; i++)
        if (recs[i].root == base_root) baseline = i + 1;
    FILE *f = open_memstream(&out, &out_len);
    if (!f) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
        goto done;
    }
    const record *base = &recs[baseline - 1];
    fprintf(f, "| machine | model | dtype | run | threads | vision s | prefill s | embed s | text emb/s | "
               "speed-up vs 1 thread | speed vs %s | load |\n|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            base->machine);
    for (int i = 0; i < n_files; i++) {
        const json_value *res = json_get(recs[i].root, "results");
        const json_value *one = row_for(&recs[i], 1);
        for (size_t k = 0; k < res->n_items; k++) {
            const json_value *r = &res->items[k];
            const int threads = (int)jnum(r, "threads");
            const double s = jnum(r, "embed_s");
            /* a ratio to the baseline only for the same work: another image size is another task */
            const json_value *b = same_work(&recs[i], base) ? row_for(base, threads) : NULL;
            if (!b && same_work(&recs[i], base)) b = row_for(base, 1);
            char speedup[32] = "–", ratio[32] = "–";
            if (one && s > 0) snprintf(speedup, sizeof speedup, "%.2fx", jnum(one, "embed_s") / s);
            if (b && s > 0) snprintf(ratio, sizeof ratio, "%.2fx", jnum(b, "embed_s") / s);
            char image[96];
            run_text(&recs[i], image, sizeof image);
            /* the load average at the start (and end, in newer records) of the run */
            char load[32] = "?";
            const json_value *la = jpath(recs[i].root, "run", "load_average"),
                             *le = jpath(recs[i].root, "run", "load_average_end");
            if (la && la->type == JSON_NUMBER && la->number >= 0) {
                if (le && le->type == JSON_NUMBER && le->number >= 0)
                    snprintf(load, sizeof load, "%.1f-%.1f", la->number, le->number);
                else snprintf(load, sizeof load, "%.1f", la->number);
            }
            fprintf(f, "| %s | %s | %s | %s | %d | %.3f | %.3f | %.3f | %.2f | %s | %s | %s |\n", recs[i].machine,
                    recs[i].model, recs[i].dtype, image, threads, jnum(r, "vision_s"), jnum(r, "prefill_s"), s,
                    jnum(r, "text_per_s"), speedup, ratio, load);
        }
    }
    if (fclose(f) != 0) {
        rc = cli_report(ABC_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (svg_path) {
        char *svg = NULL;
        size_t svg_len = 0;
        FILE *g = open_memstream(&svg, &svg_len);
        if (!g) {
            rc = cli_report(ABC_ERR_NOMEM, "out of memory");
            goto done;
        }
        write_svg(g, recs, n_files);
        if (fclose(g) != 0) {
            free(svg);
            rc = cli_report(ABC_ERR_NOMEM, "out of memory");
            goto done;
        }
        int e = emit(svg_path, svg, svg_len);
        free(svg);
        if (e) goto done;
    }
    rc = emit(NULL, out, out_len) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
done:
    free(out);
    for (int i = 0; i < n_files; i++) json_free(recs[i].root);
    free(recs);
    return rc;
}
