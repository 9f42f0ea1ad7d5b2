/* main.c — the `abc` command line: embed, tokenize, info (docs/testing.md#command-line-and-dump-contract; README "Command line").
 *
 * Exit status: 0 success, 1 the library or a file operation failed (message on stderr:
 * "abc: error: <status>: <message>"), 2 usage error (bad or missing arguments).
 */
#define _POSIX_C_SOURCE 200809L
#include "abc.h"
#include "common.h"
#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

int cmd_serve(int argc, char **argv); /* cli/serve.c */
int cmd_bench(int argc, char **argv); /* cli/bench.c */

static void print_main_usage(FILE *f) {
    fputs("usage: abc <command> [options]\n"
          "\n"
          "commands:\n"
          "  embed     embed an image and/or a text into one vector (--batch: a list of them)\n"
          "  search    rank the rows of an embedding matrix against a query\n"
          "  eval      MMEB-style retrieval evaluation (Precision@1) of a task file\n"
          "  tokenize  print the token ids of a text (no chat template)\n"
          "  info      describe a model file\n"
          "  serve     HTTP server for the OpenAI/vLLM embeddings API\n"
          "  bench     time embeddings on this machine (built-in synthetic models), compare records\n"
          "  version   print the version\n"
          "\n"
          "Run 'abc <command> --help' for the options of a command.\n",
          f);
}

static void print_embed_usage(FILE *f) {
    fputs("usage: abc embed -m MODEL [--image PATH]... [--video DIR] [--text TEXT] [--role query|candidate|auto]\n"
          "                 [--prompt RAW] [--instruction TEXT] [--task NAME] [--dim N] [-o OUT.npy]\n"
          "                 [--threads N] [--dump DIR] [--multi-vector]\n"
          "                 [--stop-after preprocess|STAGE] [--num-crops N] [--json]\n"
          "                 [--min-pixels N] [--max-pixels N] [--no-mmap]\n"
          "                 [--max-image-pixels N] [--max-decode-ratio N]\n"
          "       abc embed -m MODEL --batch INPUTS.jsonl -o OUT.npy|OUT.jsonl [--resume]\n"
          "                 [--shard I/N] [--keep-going] [--threads T] [--progress] [--multi-vector]\n"
          "                 (see 'abc embed --batch --help')\n"
          "       abc embed -m MODEL --input-ids IDS.npy [--pixel-values PV.npy --grid T,H,W]\n"
          "                 [--role query|candidate] [-o OUT.npy] [--threads N] [--dump DIR]\n"
          "\n"
          "  -m, --model MODEL     .abc weight file written by abc-convert\n"
          "  --image PATH          PNG, JPEG or PPM/PGM image; given several times, the frames of a\n"
          "                        video in that order (models with video input, e.g. vlm2vec)\n"
          "  --video DIR           a video as the image files of DIR, in name order\n"
          "  --text TEXT           instruction (with an image) or text to embed (UTF-8)\n"
          "  --role ROLE           query, candidate or auto (default auto: image+text is a query)\n"
          "  --prompt RAW          raw prompt replacing the model's template; each <|image_pad|>\n"
          "                        (phi3_v: <|image_1|>) takes the image's tokens\n"
          "  --instruction TEXT    gme: the task instruction (the system turn) of a query;\n"
          "                        candidates keep the model's default\n"
          "  --task NAME           models with task adapters (jina-v4: retrieval, text-matching, code;\n"
          "                        'abc info' lists them): the adapter to run with (default: the file's)\n"
          "  --dim N               Matryoshka: keep the first N values and normalise again (jina-v4:\n"
          "                        one of the file's dims, 'abc info')\n"
          "  -o, --output OUT.npy  write the embedding as float32 .npy, shape [D]; without -o the\n"
          "                        vector is printed on stdout, one line, values as %.9g\n"
          "  --json                print {\"dim\":D,\"embedding\":[...]} on stdout instead\n"
          "  --multi-vector        the token vectors [T, D] (one per line, or .npy [T, D]) of a model\n"
          "                        that also has a single vector (jina-v4); a model with only token\n"
          "                        vectors (colqwen2) writes them without this flag\n"
          "  --threads N           worker threads, 1..1024 (default: all online CPUs)\n"
          "  --dump DIR            write every stage that ran as DIR/<stage>.npy (the model's\n"
          "                        stages, in order: 'abc info -m MODEL'; shapes: abc.h ABC_STAGE_*)\n"
          "  --stop-after STAGE    stop after STAGE (one of the names above, or 'preprocess' =\n"
          "                        pixel_values; position_ids when there is no image)\n"
          "  --max-pixels N        qwen2_vl: pixel budget of the final resize (tokens = pixels/784;\n"
          "  --min-pixels N        default: the model file's bounds, the reference behaviour)\n"
          "  --num-crops N         phi3_v: most 336x336 crops per image, 1..4096 (default: the\n"
          "                        model file's, 4 for VLM2Vec)\n"
          "  --no-mmap             read the model into memory instead of mapping it (for files that\n"
          "                        may change or disappear while abc runs)\n"
          "  --max-image-pixels N  refuse images of more than N decoded pixels (default 205520896;\n"
          "                        decoding costs up to about 6 bytes of memory per pixel)\n"
          "  --max-decode-ratio N  refuse images claiming more than N pixels per byte of file\n"
          "                        (default 16384: only hollow or truncated files exceed it)\n"
          "debugging (feeds abc_embed_tokens_ex, bypassing tokenizer and image pipeline):\n"
          "  --input-ids IDS.npy   int32/int64 token ids, shape [L] or [1,L]\n"
          "  --pixel-values PV.npy float32 patches, shape [N,1176] (merge-group order); phi3_v: image\n"
          "                        slots [S,3,336,336] or [1,S,3,336,336] (global view, then the crops;\n"
          "                        slots beyond 1+H*W, the processor's zero padding, are ignored)\n"
          "  --grid T,H,W          patch grid of --pixel-values (T*H*W == N); phi3_v: 1,H_CROP,W_CROP\n",
          f);
}

static void print_tokenize_usage(FILE *f) {
    fputs("usage: abc tokenize -m MODEL [--json] [--] TEXT\n"
          "\n"
          "Prints TEXT's token ids space-separated on one line (special tokens such as <|im_start|>\n"
          "are recognised, no template is applied). --json prints [{\"id\":N,\"text\":\"...\"}, ...]:\n"
          "a token that is not valid UTF-8 on its own (part of a multi-byte character) has each\n"
          "invalid byte shown as \\ufffd in \"text\" and its raw bytes in \"bytes\" (hex).\n",
          f);
}

static void print_info_usage(FILE *f) {
    fputs("usage: abc info -m MODEL\n\nPrints the model's description and key sizes.\n", f);
}

/* "abc: error: <status string>: <message>[ (<context>)]"; the context is added only when the message
 * does not already mention it, so every message names the file involved. */
static int report(abc_status status, const char *message, const char *context) {
    fprintf(stderr, "abc: error: %s", abc_status_string(status));
    if (message && *message) fprintf(stderr, ": %s", message);
    if (context && (!message || !strstr(message, context))) fprintf(stderr, " ('%s')", context);
    fputc('\n', stderr);
    return EXIT_FAILED;
}

static int report_io(const char *message) { return report(ABC_ERR_IO, message, NULL); }

/* ---- argument parsing helpers ---- */

/* Arguments are walked with common.h's cli_args / cli_take (shared with batch, search and eval). */

/* A pixel budget: 784 (one 28×28 token) to 2^40. */
static bool parse_pixels(const char *option, const char *v, long long *out) {
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 784 || n > (1LL << 40)) {
        cli_usage_error("%s must be an integer from 784 (one 28x28 token) to 2^40, not '%s'", option, v);
        return false;
    }
    *out = n;
    return true;
}

static bool is_flag(const char *arg, const char *name) { return strcmp(arg, name) == 0; }

static bool is_help(const char *arg) { return is_flag(arg, "-h") || is_flag(arg, "--help"); }

/* "T,H,W" with positive integers. */
static bool parse_grid(const char *s, int grid[3]) {
    for (int k = 0; k < 3; k++) {
        char *end;
        errno = 0;
        if (*s < '0' || *s > '9') return false;
        long v = strtol(s, &end, 10);
        if (errno || v < 1 || v > 1000000) return false;
        grid[k] = (int)v;
        if (k < 2 && *end != ',') return false;
        if (k == 2 && *end != 0) return false;
        s = end + 1;
    }
    return true;
}

static bool is_stage_name(const char *s) {
    for (const char *const *name = abc_model_stages(NULL); *name; name++)
        if (strcmp(s, *name) == 0) return true;
    return false;
}

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        snprintf(err, errlen, "invalid directory name '%.400s'", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t k = 1; k <= n; k++) {
        if (buf[k] != '/' && buf[k] != 0) continue;
        char saved = buf[k];
        buf[k] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory '%.400s': %s", buf, strerror(errno));
            return -1;
        }
        buf[k] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "'%.400s' is not a directory", path);
        return -1;
    }
    return 0;
}

/* ---- model loading shared by the commands ---- */

static int load_model_with(const char *path, const abc_model_params *params, abc_model **model) {
    abc_error err = {0};
    abc_status st = abc_model_load(path, params, model, &err);
    if (st != ABC_OK) return report(st, err.message, path);
    return EXIT_OK;
}

static int load_model(const char *path, int num_crops, abc_model **model) {
    abc_model_params params = abc_model_default_params();
    params.num_crops = num_crops;
    return load_model_with(path, &params, model);
}

/* ---- embed ---- */

typedef struct {
    const char *dump_dir;
    const char *stop_stage;   /* stage name after which to stop, or NULL */
    bool stopped;             /* we asked the library to stop */
    bool write_failed;
    char message[512];
} stage_sink;

static int on_stage(void *user, const char *name, abc_array_dtype dtype, int ndim, const int64_t *shape,
                    const void *data) {
    stage_sink *sink = user;
    if (sink->dump_dir) {
        npy_dtype nd;
        switch (dtype) {
        case ABC_DTYPE_F32: nd = NPY_F32; break;
        case ABC_DTYPE_U8: nd = NPY_U8; break;
        case ABC_DTYPE_I32: nd = NPY_I32; break;
        default:
            snprintf(sink->message, sizeof sink->message, "stage '%s' has an unknown dtype %d", name,
                     (int)dtype);
            sink->write_failed = true;
            return 1;
        }
        char path[4096];
        if (strchr(name, '/') ||
            snprintf(path, sizeof path, "%s/%s.npy", sink->dump_dir, name) >= (int)sizeof path) {
            snprintf(sink->message, sizeof sink->message, "cannot dump stage '%s': bad file name", name);
            sink->write_failed = true;
            return 1;
        }
        if (npy_write(path, nd, ndim, shape, data, sink->message, sizeof sink->message) != 0) {
            sink->write_failed = true;
            return 1;
        }
    }
    if (sink->stop_stage && strcmp(name, sink->stop_stage) == 0) {
        sink->stopped = true;
        return 1;
    }
    return 0;
}

#define EMBED_MAX_IMAGES 1024 /* repeated --image: video frames */

typedef struct {
    const char *model, *image, *text, *prompt, *instruction, *output, *dump, *stop_after;
    const char *task; /* --task */
    int dim;          /* --dim; 0: full */
    const char *images[EMBED_MAX_IMAGES]; /* every --image, in order; more than one is a video */
    int n_images;
    const char *video; /* --video DIR */
    const char *input_ids, *pixel_values, *grid;
    abc_role role;
    int threads;
    int num_crops; /* 0: the model's */
    long long min_pixels, max_pixels; /* 0: the model's */
    bool json;
    bool multi_vector; /* --multi-vector */
    bool no_mmap;
    size_t max_image_pixels, max_decode_ratio; /* 0: the library's defaults */
} embed_options;

static int parse_embed_args(int argc, char **argv, embed_options *o) {
    memset(o, 0, sizeof *o);
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        const char *arg = argv[c.i], *v = NULL;
        if (is_help(arg)) {
            print_embed_usage(stdout);
            return -1;
        }
        if (cli_take(&c, "--model", "-m", &o->model)) {
        } else if (is_flag(arg, "--json")) {
            o->json = true;
        } else if (is_flag(arg, "--multi-vector")) {
            o->multi_vector = true;
        } else if (cli_take(&c, "--image", NULL, &v)) {
            if (c.bad) return EXIT_USAGE;
            if (o->n_images == EMBED_MAX_IMAGES) return cli_usage_error("at most %d --image", EMBED_MAX_IMAGES);
            if (!o->image) o->image = v;
            o->images[o->n_images++] = v;
        } else if (cli_take(&c, "--video", NULL, &o->video)) {
        } else if (cli_take(&c, "--text", NULL, &o->text)) {
        } else if (cli_take(&c, "--prompt", NULL, &o->prompt)) {
        } else if (cli_take(&c, "--instruction", NULL, &o->instruction)) {
        } else if (cli_take(&c, "--task", NULL, &o->task)) {
        } else if (cli_take(&c, "--dim", NULL, &v)) {
            long n;
            if (c.bad) return EXIT_USAGE;
            if (!cli_parse_long(v, 1, 1 << 20, &n)) return cli_usage_error("--dim must be a positive integer, not '%s'", v);
            o->dim = (int)n;
        } else if (cli_take(&c, "--output", "-o", &o->output)) {
        } else if (cli_take(&c, "--dump", NULL, &o->dump)) {
        } else if (cli_take(&c, "--stop-after", NULL, &o->stop_after)) {
        } else if (cli_take(&c, "--input-ids", NULL, &o->input_ids)) {
        } else if (cli_take(&c, "--pixel-values", NULL, &o->pixel_values)) {
        } else if (cli_take(&c, "--grid", NULL, &o->grid)) {
        } else if (cli_take(&c, "--role", NULL, &v)) {
            if (c.bad) return EXIT_USAGE;
            if (strcmp(v, "query") == 0) o->role = ABC_ROLE_QUERY;
            else if (strcmp(v, "candidate") == 0) o->role = ABC_ROLE_CANDIDATE;
            else if (strcmp(v, "auto") == 0) o->role = ABC_ROLE_AUTO;
            else return cli_usage_error("--role must be query, candidate or auto, not '%s'", v);
        } else if (cli_take(&c, "--min-pixels", NULL, &v)) {
            if (c.bad || !parse_pixels("--min-pixels", v, &o->min_pixels)) return EXIT_USAGE;
        } else if (cli_take(&c, "--max-pixels", NULL, &v)) {
            if (c.bad || !parse_pixels("--max-pixels", v, &o->max_pixels)) return EXIT_USAGE;
        } else if (cli_take(&c, "--num-crops", NULL, &v)) {
            long n;
            if (c.bad) return EXIT_USAGE;
            if (!cli_parse_long(v, 1, 4096, &n))
                return cli_usage_error("--num-crops must be an integer from 1 to 4096, not '%s'", v);
            o->num_crops = (int)n;
        } else if (is_flag(arg, "--no-mmap")) {
            o->no_mmap = true;
        } else if (cli_take(&c, "--max-image-pixels", NULL, &v)) {
            long n;
            if (c.bad) return EXIT_USAGE;
            if (!cli_parse_long(v, 1, LONG_MAX, &n))
                return cli_usage_error("--max-image-pixels must be a positive integer, not '%s'", v);
            o->max_image_pixels = (size_t)n;
        } else if (cli_take(&c, "--max-decode-ratio", NULL, &v)) {
            long n;
            if (c.bad) return EXIT_USAGE;
            if (!cli_parse_long(v, 1, LONG_MAX, &n))
                return cli_usage_error("--max-decode-ratio must be a positive integer, not '%s'", v);
            o->max_decode_ratio = (size_t)n;
        } else if (cli_take(&c, "--threads", "-t", &v)) {
            long n;
            if (c.bad) return EXIT_USAGE;
            if (!cli_parse_long(v, 1, 1024, &n))
                return cli_usage_error("--threads must be an integer from 1 to 1024, not '%s'", v);
            o->threads = (int)n;
        } else {
            return cli_usage_error("embed: unknown %s '%s'", arg[0] == '-' ? "option" : "argument", arg);
        }
        if (c.bad) return EXIT_USAGE;
    }
    if (!o->model) return cli_usage_error("embed: -m MODEL is required");
    bool raw = o->input_ids || o->pixel_values || o->grid;
    if (raw) {
        if (o->image || o->video || o->text || o->prompt || o->instruction)
            return cli_usage_error("--input-ids/--pixel-values cannot be combined with --image, --text, --prompt "
                                   "or --instruction");
        if (!o->input_ids) return cli_usage_error("--pixel-values needs --input-ids");
        if (!o->pixel_values != !o->grid) return cli_usage_error("--pixel-values and --grid go together");
    } else if (!o->image && !o->video && !o->text && !o->prompt) {
        return cli_usage_error("embed: nothing to embed (give --image, --video, --text or --prompt)");
    }
    if (o->video && o->image) return cli_usage_error("--video cannot be combined with --image");
    if (o->stop_after && strcmp(o->stop_after, "preprocess") != 0 && !is_stage_name(o->stop_after))
        return cli_usage_error("--stop-after must be 'preprocess' or a stage name, not '%s'", o->stop_after);
    return EXIT_OK;
}

/* Reads --input-ids (int32 or int64, shape [L] or [1,L]) as int32. */
static int read_ids(const char *path, int32_t **ids, size_t *n) {
    char msg[512];
    npy_array a;
    if (npy_read(path, &a, msg, sizeof msg) != 0) return report_io(msg);
    bool shape_ok = a.ndim == 1 || (a.ndim == 2 && a.shape[0] == 1);
    if ((a.dtype != NPY_I32 && a.dtype != NPY_I64) || !shape_ok) {
        npy_free(&a);
        snprintf(msg, sizeof msg, "'%s': token ids must be int32 or int64 of shape [L]", path);
        return report(ABC_ERR_INVALID_ARG, msg, NULL);
    }
    int32_t *out = malloc(a.count ? a.count * sizeof *out : 1);
    if (!out) {
        npy_free(&a);
        return report(ABC_ERR_NOMEM, "token ids", NULL);
    }
    for (size_t k = 0; k < a.count; k++) {
        int64_t v = a.dtype == NPY_I32 ? ((int32_t *)a.data)[k] : ((int64_t *)a.data)[k];
        if (v < INT32_MIN || v > INT32_MAX) {
            npy_free(&a);
            free(out);
            snprintf(msg, sizeof msg, "'%s': token id %lld out of range", path, (long long)v);
            return report(ABC_ERR_INVALID_ARG, msg, NULL);
        }
        out[k] = (int32_t)v;
    }
    *n = a.count;
    npy_free(&a);
    *ids = out;
    return EXIT_OK;
}

/* Reads --pixel-values: float32 [N,1176] patches (qwen2_vl), or image slots [S,3,X,X] / [1,S,3,X,X]
 * (phi3_v). *count receives N, or S cut to the 1 + h·w slots of the crop grid (the processor pads
 * with zero slots up to num_crops + 1). */
static int read_pixel_values(const char *path, const int grid[3], npy_array *pv, size_t *count) {
    char msg[512];
    if (npy_read(path, pv, msg, sizeof msg) != 0) return report_io(msg);
    const int64_t *shape = pv->shape;
    int ndim = pv->ndim;
    if (ndim == 5 && shape[0] == 1) shape++, ndim--;
    if (pv->dtype == NPY_F32 && ndim == 2 && shape[1] == 1176) {
        *count = (size_t)shape[0];
        return EXIT_OK;
    }
    if (pv->dtype == NPY_F32 && ndim == 4 && shape[1] == 3 && shape[2] == shape[3] && shape[2] > 0) {
        const uint64_t used = (uint64_t)grid[1] * (uint64_t)grid[2] + 1;
        *count = (size_t)shape[0];
        if (grid[0] == 1 && used < *count) *count = (size_t)used;
        return EXIT_OK;
    }
    npy_free(pv);
    snprintf(msg, sizeof msg, "'%s': pixel values must be float32 of shape [N,1176] or [S,3,336,336]", path);
    return report(ABC_ERR_INVALID_ARG, msg, NULL);
}

static int print_vector(const float *v, int n) {
    for (int k = 0; k < n; k++) printf(k ? " %.9g" : "%.9g", (double)v[k]);
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) return report_io("cannot write to standard output");
    return EXIT_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The regular files of DIR (hidden ones skipped), sorted by name: the frames of --video. */
static int list_frames(const char *dir, char ***paths, int *n) {
    char msg[600];
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(msg, sizeof msg, "cannot open the video directory '%s': %s", dir, strerror(errno));
        return report_io(msg);
    }
    char **list = NULL;
    int count = 0, rc = EXIT_OK;
    for (struct dirent *e; rc == EXIT_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len), **grown = NULL;
        struct stat sb;
        if (path) snprintf(path, len, "%s/%s", dir, e->d_name);
        if (path && (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))) {
            free(path);
            continue;
        }
        if (count == EMBED_MAX_IMAGES) {
            free(path);
            snprintf(msg, sizeof msg, "'%s' holds more than %d frames", dir, EMBED_MAX_IMAGES);
            rc = report(ABC_ERR_TOO_LARGE, msg, NULL);
        } else if (!path || !(grown = realloc(list, (size_t)(count + 1) * sizeof *list))) {
            free(path);
            rc = report(ABC_ERR_NOMEM, "video frame list", NULL);
        } else {
            list = grown;
            list[count++] = path;
        }
    }
    closedir(d);
    if (rc == EXIT_OK && count == 0) {
        snprintf(msg, sizeof msg, "the video directory '%s' holds no files", dir);
        rc = report(ABC_ERR_INVALID_ARG, msg, NULL);
    }
    if (rc != EXIT_OK) {
        for (int k = 0; k < count; k++) free(list[k]);
        free(list);
        return rc;
    }
    qsort(list, (size_t)count, sizeof *list, by_name);
    *paths = list;
    *n = count;
    return EXIT_OK;
}

/* Several --image or --video DIR: the frames decoded, then one abc_embed. -1 when already reported. */
static int run_embed_video(abc_context *ctx, const embed_options *o, float *vec, size_t dim) {
    char **listed = NULL;
    int n = o->n_images;
    if (o->video && list_frames(o->video, &listed, &n) != EXIT_OK) return -1;
    const char *const *paths = listed ? (const char *const *)listed : o->images;
    abc_image *frames = calloc((size_t)n, sizeof *frames);
    int rc = frames ? ABC_OK : -1, loaded = 0;
    if (!frames) report(ABC_ERR_NOMEM, "video frames", NULL);
    for (; rc == ABC_OK && loaded < n; loaded++) {
        abc_error err = {0};
        abc_status st = abc_image_load(paths[loaded], 0, &frames[loaded], &err);
        if (st != ABC_OK) {
            report(st, err.message, paths[loaded]);
            rc = -1;
        }
    }
    if (rc == ABC_OK) {
        abc_input in = abc_input_default();
        in.frames = frames;
        in.n_frames = n;
        in.text = o->text;
        in.prompt = o->prompt;
        in.instruction = o->instruction;
        in.task = o->task;
        in.dim = o->dim;
        in.role = o->role;
        rc = abc_embed(ctx, &in, vec, dim);
    }
    for (int k = 0; frames && k < n; k++) abc_image_free(&frames[k]);
    free(frames);
    for (int k = 0; listed && k < n; k++) free(listed[k]);
    free(listed);
    return rc;
}

/* The input of the options' single image and/or text. */
static abc_input options_input(const embed_options *o) {
    abc_input in = abc_input_default();
    in.image_path = o->image;
    in.text = o->text;
    in.prompt = o->prompt;
    in.instruction = o->instruction;
    in.task = o->task;
    in.dim = o->dim;
    in.role = o->role;
    return in;
}

static int run_embed(abc_context *ctx, const embed_options *o, float *vec, size_t dim) {
    if (o->video || o->n_images > 1) return run_embed_video(ctx, o, vec, dim);
    if (!o->input_ids) {
        abc_input in = options_input(o);
        return abc_embed(ctx, &in, vec, dim);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0, n_pixels = 0;
    npy_array pv = {0};
    int grid[3] = {0, 0, 0};
    if (o->grid) parse_grid(o->grid, grid); /* validated in cmd_embed */
    int rc = read_ids(o->input_ids, &ids, &n_ids);
    if (rc == EXIT_OK && o->pixel_values) rc = read_pixel_values(o->pixel_values, grid, &pv, &n_pixels);
    if (rc != EXIT_OK) {
        free(ids);
        return -1; /* already reported */
    }
    abc_status st = abc_embed_tokens_ex(ctx, ids, n_ids, pv.data, n_pixels, o->grid ? grid : NULL, o->role, o->task,
                                         o->dim, vec, dim);
    free(ids);
    npy_free(&pv);
    return st;
}

/* A multi-vector model (abc_model_multi_vector_dim > 0, no single vector): the [T, D] token vectors of one
 * input to -o (.npy), --json or standard output (one row per line). */
static int embed_multi(abc_context *ctx, const embed_options *o, int dim) {
    if (o->input_ids || o->video || o->n_images > 1)
        return cli_usage_error("a multi-vector model takes --image/--text/--prompt (not --input-ids or video)");
    abc_input in = options_input(o);
    size_t n = 0;
    abc_status st = abc_embed_multi(ctx, &in, NULL, 0, &n); /* the size: tokenising only */
    float *vecs = st == ABC_OK ? malloc(n * (size_t)dim * sizeof *vecs + 1) : NULL;
    if (st == ABC_OK && !vecs) return report(ABC_ERR_NOMEM, "token vector buffer", NULL);
    if (st == ABC_OK) st = abc_embed_multi(ctx, &in, vecs, n * (size_t)dim, &n);
    int rc = EXIT_OK;
    char msg[512];
    if (st == ABC_ERR_STOPPED) {
        rc = EXIT_OK; /* --stop-after */
    } else if (st != ABC_OK) {
        rc = report(st, abc_context_errmsg(ctx), (st == ABC_ERR_IO || st == ABC_ERR_IMAGE) ? o->image : NULL);
    } else if (o->json) {
        printf("{\"n_vectors\":%zu,\"dim\":%d,\"vectors\":[", n, dim);
        for (size_t t = 0; t < n; t++) {
            printf(t ? ",[" : "[");
            for (int k = 0; k < dim; k++) {
                if (k) putchar(',');
                cli_json_float(stdout, vecs[t * (size_t)dim + (size_t)k]);
            }
            putchar(']');
        }
        puts("]}");
        if (fflush(stdout) != 0 || ferror(stdout)) rc = report_io("cannot write to standard output");
    } else if (!o->output) {
        for (size_t t = 0; t < n && rc == EXIT_OK; t++) rc = print_vector(vecs + t * (size_t)dim, dim);
    }
    if (st == ABC_OK && rc == EXIT_OK && o->output) {
        const int64_t shape[2] = {(int64_t)n, dim};
        rc = npy_write(o->output, NPY_F32, 2, shape, vecs, msg, sizeof msg) == 0 ? EXIT_OK : report_io(msg);
    }
    free(vecs);
    return rc;
}

static int cmd_embed(int argc, char **argv) {
    for (int k = 1; k < argc; k++) /* --batch: many inputs (cli/batch.c) */
        if (strcmp(argv[k], "--batch") == 0 || strncmp(argv[k], "--batch=", 8) == 0) return cmd_embed_batch(argc, argv);
    embed_options o;
    int rc = parse_embed_args(argc, argv, &o);
    if (rc < 0) return EXIT_OK; /* --help */
    if (rc != EXIT_OK) return rc;
    int grid[3];
    if (o.grid && !parse_grid(o.grid, grid))
        return cli_usage_error("--grid must be three positive integers T,H,W, not '%s'", o.grid);

    char msg[512];
    if (o.dump && make_dirs(o.dump, msg, sizeof msg) != 0) return report_io(msg);

    stage_sink sink = {0};
    sink.dump_dir = o.dump;
    if (o.stop_after) {
        bool has_image = o.image || o.video || o.pixel_values;
        if (strcmp(o.stop_after, "preprocess") == 0)
            sink.stop_stage = has_image ? ABC_STAGE_PIXEL_VALUES : ABC_STAGE_POSITION_IDS;
        else
            sink.stop_stage = o.stop_after;
    }

    abc_model *model = NULL;
    abc_model_params params = abc_model_default_params();
    params.num_crops = o.num_crops;
    params.min_pixels = o.min_pixels;
    params.max_pixels = o.max_pixels;
    params.load_into_memory = o.no_mmap;
    if (o.max_image_pixels) params.max_image_pixels = o.max_image_pixels;
    if (o.max_decode_ratio) params.max_decode_ratio = o.max_decode_ratio;
    if ((rc = load_model_with(o.model, &params, &model)) != EXIT_OK) return rc;

    abc_context_params cp = abc_context_default_params();
    cp.n_threads = o.threads;
    if (o.dump || o.stop_after) {
        cp.on_stage = on_stage;
        cp.on_stage_user = &sink;
    }
    abc_context *ctx = NULL;
    abc_error err = {0};
    abc_status st = abc_context_new(model, &cp, &ctx, &err);
    if (st != ABC_OK) {
        abc_model_free(model);
        return report(st, err.message, NULL);
    }

    int dim = abc_model_embedding_dim(model);
    const int multi_dim = abc_model_multi_vector_dim(model);
    if (o.multi_vector && multi_dim == 0) {
        rc = cli_usage_error("--multi-vector: '%s' has no multi-vector output", o.model);
    } else if (o.multi_vector && o.dim) {
        rc = cli_usage_error("--dim applies to the single vector, not to --multi-vector");
    }
    if (rc != EXIT_OK || ((dim == 0 || o.multi_vector) && multi_dim > 0)) {
        if (rc == EXIT_OK) rc = embed_multi(ctx, &o, multi_dim);
        if (rc == EXIT_OK && sink.write_failed) rc = report_io(sink.message);
        abc_context_free(ctx);
        abc_model_free(model);
        return rc;
    }
    float *vec = malloc(dim > 0 ? (size_t)dim * sizeof *vec : 1);
    if (!vec) {
        rc = report(ABC_ERR_NOMEM, "embedding buffer", NULL);
        goto done;
    }
    int est = run_embed(ctx, &o, vec, dim > 0 ? (size_t)dim : 0);
    if (o.dim > 0 && o.dim < dim) dim = o.dim; /* the library wrote the truncated vector */
    if (est < 0) {
        rc = EXIT_FAILED;
    } else if (sink.write_failed) {
        rc = report_io(sink.message);
    } else if (est == ABC_ERR_STOPPED && sink.stopped) {
        rc = EXIT_OK; /* --stop-after: no embedding to write */
    } else if (est != ABC_OK) {
        const char *context = (est == ABC_ERR_IO || est == ABC_ERR_IMAGE) && o.n_images == 1 ? o.image : NULL;
        rc = report((abc_status)est, abc_context_errmsg(ctx), context);
    } else {
        if (o.stop_after)
            fprintf(stderr, "abc: note: stage '%s' did not run; the full embedding was computed\n",
                    sink.stop_stage);
        if (o.json) {
            printf("{\"dim\":%d,\"embedding\":[", dim);
            for (int k = 0; k < dim; k++) {
                if (k) putchar(',');
                cli_json_float(stdout, vec[k]);
            }
            puts("]}");
            if (fflush(stdout) != 0 || ferror(stdout)) rc = report_io("cannot write to standard output");
            if (rc == EXIT_OK && o.output) {
                int64_t shape[1] = {dim};
                rc = npy_write(o.output, NPY_F32, 1, shape, vec, msg, sizeof msg) == 0 ? EXIT_OK : report_io(msg);
            }
        } else if (o.output) {
            int64_t shape[1] = {dim};
            rc = npy_write(o.output, NPY_F32, 1, shape, vec, msg, sizeof msg) == 0 ? EXIT_OK : report_io(msg);
        } else {
            rc = print_vector(vec, dim);
        }
    }
done:
    free(vec);
    abc_context_free(ctx);
    abc_model_free(model);
    return rc;
}

/* ---- tokenize ---- */

/* Length of the valid UTF-8 sequence starting at s[0] (strict: no overlongs, surrogates or code
 * points above U+10FFFF), or 0 when s[0] does not start one. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp, min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Writes `s` as the inside of a JSON string; invalid UTF-8 bytes become \ufffd. Returns whether all
 * of it was valid UTF-8. */
static bool put_json_string(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    bool valid = true;
    for (size_t k = 0; k < n;) {
        unsigned c = s[k];
        size_t len = utf8_sequence(s + k, n - k);
        if (len == 0) {
            fputs("\\ufffd", stdout);
            valid = false;
            k++;
            continue;
        }
        if (len > 1) {
            fwrite(s + k, 1, len, stdout);
        } else if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c == '\r') {
            fputs("\\r", stdout);
        } else if (c == '\t') {
            fputs("\\t", stdout);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else {
            putchar((int)c);
        }
        k += len;
    }
    return valid;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL;
    bool json = false, options_done = false;
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        const char *arg = argv[c.i];
        if (!options_done && arg[0] == '-' && arg[1] != 0) {
            if (is_help(arg)) {
                print_tokenize_usage(stdout);
                return EXIT_OK;
            }
            if (is_flag(arg, "--")) options_done = true;
            else if (is_flag(arg, "--json")) json = true;
            else if (cli_take(&c, "--model", "-m", &model_path)) {
                if (c.bad) return EXIT_USAGE;
            } else return cli_usage_error("tokenize: unknown option '%s' (use -- before a text starting with '-')", arg);
        } else if (!text) {
            text = arg;
        } else {
            return cli_usage_error("tokenize: one TEXT argument expected (quote it), got also '%s'", arg);
        }
    }
    if (!model_path) return cli_usage_error("tokenize: -m MODEL is required");
    if (!text) return cli_usage_error("tokenize: TEXT is required");

    abc_model *model = NULL;
    int rc = load_model(model_path, 0, &model);
    if (rc != EXIT_OK) return rc;
    size_t len = strlen(text), cap = len + 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    abc_error err = {0};
    abc_status st = ids ? abc_tokenize(model, text, len, ids, cap, &n, &err) : ABC_ERR_NOMEM;
    if (st == ABC_ERR_INVALID_ARG && n > cap) { /* more tokens than bytes: retry with the exact size */
        int32_t *bigger = realloc(ids, n * sizeof *ids);
        if (!bigger) st = ABC_ERR_NOMEM;
        else {
            ids = bigger;
            cap = n;
            st = abc_tokenize(model, text, len, ids, cap, &n, &err);
        }
    }
    if (st != ABC_OK) {
        rc = report(st, st == ABC_ERR_NOMEM && !ids ? "token buffer" : err.message, NULL);
    } else if (!json) {
        for (size_t k = 0; k < n; k++) printf(k ? " %d" : "%d", (int)ids[k]);
        putchar('\n');
    } else {
        putchar('[');
        for (size_t k = 0; k < n; k++) {
            size_t blen = 0;
            const char *bytes = abc_token_bytes(model, ids[k], &blen);
            printf("%s{\"id\":%d,\"text\":\"", k ? "," : "", (int)ids[k]);
            bool valid = put_json_string(bytes ? bytes : "", bytes ? blen : 0);
            putchar('"');
            if (!valid) {
                fputs(",\"bytes\":\"", stdout);
                for (size_t b = 0; b < blen; b++) printf("%02x", (unsigned char)bytes[b]);
                putchar('"');
            }
            putchar('}');
        }
        puts("]");
    }
    if (rc == EXIT_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = report_io("cannot write to standard output");
    free(ids);
    abc_model_free(model);
    return rc;
}

/* ---- info ---- */

static int cmd_info(int argc, char **argv) {
    const char *model_path = NULL;
    cli_args c = {argc, argv, 1, false};
    for (; c.i < argc; c.i++) {
        if (is_help(argv[c.i])) {
            print_info_usage(stdout);
            return EXIT_OK;
        }
        if (cli_take(&c, "--model", "-m", &model_path)) {
            if (c.bad) return EXIT_USAGE;
        } else {
            return cli_usage_error("info: unknown argument '%s'", argv[c.i]);
        }
    }
    if (!model_path) return cli_usage_error("info: -m MODEL is required");
    abc_model *model = NULL;
    int rc = load_model(model_path, 0, &model);
    if (rc != EXIT_OK) return rc;
    const char *desc = abc_model_description(model);
    struct stat st;
    if (desc && *desc) fputs(desc, stdout);
    if (desc && *desc && desc[strlen(desc) - 1] != '\n') putchar('\n');
    printf("file: %s", model_path);
    if (stat(model_path, &st) == 0) printf(" (%lld bytes)", (long long)st.st_size);
    printf("\npreset: %s\nembedding dim: %d\nstages:", abc_model_preset(model), abc_model_embedding_dim(model));
    for (const char *const *name = abc_model_stages(model); *name; name++) printf(" %s", *name);
    putchar('\n');
    const char *const *tasks = abc_model_tasks(model);
    if (*tasks) {
        printf("tasks:");
        for (; *tasks; tasks++) printf(" %s", *tasks);
        printf(" (default %s)\n", abc_model_default_task(model));
    }
    int n_dims = 0;
    const int *dims = abc_model_matryoshka_dims(model, &n_dims);
    if (n_dims) {
        printf("matryoshka dims:");
        for (int k = 0; k < n_dims; k++) printf(" %d", dims[k]);
        putchar('\n');
    }
    if (fflush(stdout) != 0 || ferror(stdout)) rc = report_io("cannot write to standard output");
    abc_model_free(model);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_main_usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        print_main_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("abc %s\n%s\n", abc_version(), abc_system_info());
        return EXIT_OK;
    }
    if (strcmp(cmd, "embed") == 0) return cmd_embed(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "search") == 0) return cmd_search(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1); /* cli/serve.c */
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1); /* cli/bench.c */
    return cli_usage_error("unknown command '%s'", cmd);
}
