/* SPDX-License-Identifier: MIT */
/* abc.h — image + instruction → embedding vector, in portable C.
 *
 * Runs the ABC (Qwen2-VL + LoRA, bidirectional attention, mean pooling, MLP head) and VLM2Vec
 * (Qwen2-VL + LoRA/DoRA, causal attention, last-token pooling) embedding models from a single
 * memory-mapped `.abc` weight file written by `abc-convert`.
 *
 * Usage:
 *   abc_error err;
 *   abc_model *model;
 *   if (abc_model_load("model.abc", NULL, &model, &err) != ABC_OK) { puts(err.message); ... }
 *   abc_context *ctx;
 *   abc_context_new(model, NULL, &ctx, &err);
 *   abc_input in = abc_input_default();
 *   in.image_path = "cat.jpg"; in.text = "what is the animal on the left?";
 *   float vec[4096];
 *   abc_embed(ctx, &in, vec, abc_model_embedding_dim(model));   // message: abc_context_errmsg(ctx)
 *   abc_context_free(ctx); abc_model_free(model);
 *
 * Threading: a loaded abc_model is read-only and may be shared by any number of threads; each thread
 * uses its own abc_context. The library never prints, never exits and keeps no global mutable state.
 *
 * Build options (define when compiling abc.c; platforms/README.md shows a bare-metal build):
 *   ABC_NO_THREADS   no pthreads: every context runs on the caller's thread (n_threads above 1 is
 *                    accepted and ignored).
 *   ABC_NO_MMAP      abc_model_load reads the file into memory with fopen/fread instead of mapping it.
 *   ABC_NO_STDIO     no file access at all (implies ABC_NO_MMAP): abc_model_load, abc_image_load and
 *                    abc_input.image_path return ABC_ERR_UNSUPPORTED; models come from
 *                    abc_model_load_from_memory, images from bytes or RGB buffers.
 *   ABC_BARE_METAL   all three, and aligned memory without posix_memalign: the library then calls only
 *                    the C library's memory, string, formatting and math functions.
 *   ABC_MALLOC(size), ABC_FREE(ptr)
 *                    the allocator for everything the library allocates outside a context's arena
 *                    (define both; alignment is handled by the library, no realloc is needed).
 *   ABC_NO_SIMD      scalar kernels only.
 * The instruction set is detected at run time where the OS tells it (x86 cpuid, Linux auxv on
 * aarch64); elsewhere it is the compiler's target: __ARM_NEON, __ARM_FEATURE_DOTPROD (or define
 * ABC_ARM_DOTPROD). 32-bit Arm runs the scalar kernels.
 *
 * Memory: abc_embed_arena_size tells the working memory an embedding needs; a context made with
 * abc_context_params.arena takes all of it from that buffer, and abc_embed then never calls the
 * allocator. abc_model_load_from_memory uses weights in place (read-only memory such as flash is fine).
 */
#ifndef ABC_H
#define ABC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ABC_VERSION_MAJOR 0
#define ABC_VERSION_MINOR 2
#define ABC_VERSION_PATCH 0
#define ABC_VERSION_STRING "0.2.0"

/* Symbols of the shared library: only the abc_* functions below are exported (the Makefile builds
 * libabc.so with -fvisibility=hidden -DABC_BUILD_SHARED). Static builds and vendored copies need nothing. */
#if defined(_WIN32) && defined(ABC_BUILD_SHARED)
#define ABC_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(ABC_BUILD_SHARED)
#define ABC_API __attribute__((visibility("default")))
#else
#define ABC_API
#endif

typedef enum {
    ABC_OK = 0,
    ABC_ERR_INVALID_ARG,  /* NULL pointer, bad option value, buffer too small */
    ABC_ERR_IO,           /* a file could not be opened, read, mapped or written */
    ABC_ERR_FORMAT,       /* the weight file is malformed (bad magic, offsets, shapes, metadata) */
    ABC_ERR_VERSION,      /* the weight file's format version is not supported */
    ABC_ERR_NOMEM,        /* an allocation failed */
    ABC_ERR_IMAGE,        /* an image is corrupt, truncated or of an unknown format */
    ABC_ERR_UNSUPPORTED,  /* valid input using a feature we do not implement (12-bit JPEG, ...) */
    ABC_ERR_TOO_LARGE,    /* a size exceeds a configured limit (image pixels, sequence length) */
    ABC_ERR_UTF8,         /* text is not valid UTF-8 */
    ABC_ERR_PROMPT,       /* prompt and inputs disagree (image without placeholder, ...) */
    ABC_ERR_STOPPED,      /* the stage callback asked to stop (not a failure) */
    ABC_ERR_INTERNAL      /* a bug: please report it */
} abc_status;

/* The library's version ("0.2.0"), as ABC_VERSION_STRING when the header and library match. */
ABC_API const char *abc_version(void);
/* One line describing what this library runs on: version, kernel path chosen (avx512, avx2, neon or
 * scalar), the SIMD features found, online CPUs (the default thread count), compiler. Constant. */
ABC_API const char *abc_system_info(void);

/* Short constant description of a status code ("invalid argument", ...). Never NULL. */
ABC_API const char *abc_status_string(abc_status status);

/* Where a function cannot report through a context, it fills one of these (may be NULL). */
typedef struct {
    abc_status code;
    char message[256];
} abc_error;

typedef struct abc_model abc_model;
typedef struct abc_context abc_context;

/* ---- model ------------------------------------------------------------------------------------ */

typedef struct {
    size_t max_image_pixels;  /* decoded images larger than this are refused (0: default, 4·12845056·4) */
    int max_tokens;           /* longest accepted sequence (0: default 32768) */
    int num_crops;            /* phi3_v: most 336×336 crops per image (0: the model file's hd.num_crops) */
    /* qwen2_vl: the pixel budget of smart_resize, which sets the image-token count (pixels / 784) and so
     * most of the time an image costs. 0: the model file's bounds (the exact reference behaviour). The
     * final resize is bounded: for preset abc its second stage. Must be >= 784 (one 28×28 token) and
     * min <= max; phi3_v models refuse them (use num_crops). */
    int64_t min_pixels, max_pixels;
    /* Decode budget: an image claiming more than this many pixels per byte of its encoded file is
     * refused before anything is decoded (0: default 16384, above what any complete PNG, JPEG or PPM
     * reaches, so only hollow or truncated files are refused). */
    size_t max_decode_ratio;
    /* Non-zero: read the weight file once into memory instead of mapping it (for files on media that
     * may change or disappear: a mapped file truncated under a running process kills it with SIGBUS). */
    int load_into_memory;
} abc_model_params;

ABC_API abc_model_params abc_model_default_params(void);

/* Maps (or reads, see load_into_memory) and validates `path`, which must be a regular file. `params` may be
 * NULL (defaults). On failure *out is NULL. */
ABC_API abc_status abc_model_load(const char *path, const abc_model_params *params, abc_model **out,
                          abc_error *err);
ABC_API /* Like abc_model_load, from a .abc file's bytes in memory (firmware without a file system, an asset
 * bundled in an app, weights in flash). The bytes are used in place, never copied or written: `data`
 * must be 64-byte aligned (the tensor alignment of the format) and stay valid and unchanged until
 * abc_model_free. */
ABC_API abc_status abc_model_load_from_memory(const void *data, size_t size, const abc_model_params *params,
                                              abc_model **out, abc_error *err);
ABC_API void abc_model_free(abc_model *model);

/* The single embedding's width; 0 for a model without one (a multi-vector model such as preset
 * colqwen2, whose output is abc_embed_multi's). */
ABC_API int abc_model_embedding_dim(const abc_model *model);
/* The width of each per-token vector of abc_embed_multi; 0 when the model has no multi-vector output. */
ABC_API int abc_model_multi_vector_dim(const abc_model *model);
/* "abc", "vlm2vec", ... (the preset stored in the file). */
ABC_API const char *abc_model_preset(const abc_model *model);
/* Human-readable multi-line description (architecture, sizes, dtypes). Owned by the model. */
ABC_API const char *abc_model_description(const abc_model *model);
/* The stages `model` emits, in order, NULL-terminated; with NULL, every stage of every family. */
ABC_API const char *const *abc_model_stages(const abc_model *model);
/* The task adapters abc_input.task may name, NULL-terminated (empty for files without any); the first
 * listed by abc_model_default_task is used when task is NULL. */
ABC_API const char *const *abc_model_tasks(const abc_model *model);
/* The default task's name, or NULL for files without task adapters. */
ABC_API const char *abc_model_default_task(const abc_model *model);
/* The Matryoshka dims the file allows for abc_input.dim (*n of them), or NULL with *n = 0 when any
 * dim in [1, abc_model_embedding_dim] is allowed. */
ABC_API const int *abc_model_matryoshka_dims(const abc_model *model, int *n);

/* ---- tokenizer -------------------------------------------------------------------------------- */

/* Tokenizes `text` (`len` bytes, UTF-8) with the model's tokenizer; special tokens such as
 * <|im_start|> are recognised, no template is applied. Writes up to `cap` ids; *n_ids receives the
 * full count (call again with a larger buffer if *n_ids > cap; then ABC_ERR_INVALID_ARG is returned). */
ABC_API abc_status abc_tokenize(const abc_model *model, const char *text, size_t len, int32_t *ids,
                        size_t cap, size_t *n_ids, abc_error *err);
/* The raw bytes of token `id` (not NUL-terminated); NULL for an invalid id. */
ABC_API const char *abc_token_bytes(const abc_model *model, int32_t id, size_t *len);

/* ---- images ----------------------------------------------------------------------------------- */

typedef struct {
    int width, height;
    uint8_t *rgb;  /* width·height·3 bytes, row-major, owned: release with abc_image_free */
} abc_image;

/* Decodes PNG, JPEG or PPM/PGM to 8-bit RGB exactly as Pillow's Image.open(f).convert("RGB").
 * max_pixels: 0 for the default limit. */
ABC_API abc_status abc_image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out,
                            abc_error *err);
ABC_API abc_status abc_image_load(const char *path, size_t max_pixels, abc_image *out, abc_error *err);
/* The same with an explicit decode budget: max_ratio pixels per byte of encoded input (0: the default
 * 16384, which abc_image_decode and abc_image_load apply). abc_image_load* read regular files only
 * (FIFOs, devices and directories are refused) and at most 8·max_pixels + 1 MiB bytes. */
ABC_API abc_status abc_image_decode_budget(const uint8_t *data, size_t size, size_t max_pixels, size_t max_ratio,
                                           abc_image *out, abc_error *err);
ABC_API abc_status abc_image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                         abc_error *err);
ABC_API void abc_image_free(abc_image *image);

/* ---- context and embedding -------------------------------------------------------------------- */

typedef enum { ABC_DTYPE_F32 = 0, ABC_DTYPE_U8 = 1, ABC_DTYPE_I32 = 2 } abc_array_dtype;

/* Pipeline stages: the names the stage callback receives and `abc embed --dump DIR` writes as
 * DIR/<name>.npy. Which stages run, and in which order, depends on the model's family:
 * abc_model_stages(model) lists them. */
#define ABC_STAGE_DECODED        "decoded"             /* u8 [h, w, 3]: the image as decoded */
#define ABC_STAGE_RESIZED        "resized"             /* qwen2_vl: u8 [h', w', 3] after smart_resize */
#define ABC_STAGE_HD_IMAGE       "hd_image"            /* phi3_v: u8 [h', w', 3], the padded HD image */
#define ABC_STAGE_IMAGE_SIZES    "image_sizes"         /* phi3_v: i32 [2], hd_image's (height, width) */
#define ABC_STAGE_PIXEL_VALUES   "pixel_values"        /* f32 [patches, 1176]; phi3_v [slots, 3, 336, 336] */
#define ABC_STAGE_INPUT_IDS      "input_ids"           /* i32 [L], image tokens expanded (phi3_v: -1) */
#define ABC_STAGE_POSITION_IDS   "position_ids"        /* i32 [3, L] (qwen2_vl M-RoPE) or [L] */
#define ABC_STAGE_VISION_EMBEDS  "vision_embeds"       /* qwen2_vl: f32 [merged patches, hidden] */
#define ABC_STAGE_CLIP_FEATURES  "clip_patch_features" /* phi3_v: f32 [slots, 576, C] */
#define ABC_STAGE_IMAGE_FEATURES "image_features"      /* phi3_v: f32 [image tokens, hidden] */
#define ABC_STAGE_INPUTS_EMBEDS  "inputs_embeds"       /* phi3_v: f32 [L, hidden], the decoder's input */
#define ABC_STAGE_LAST_HIDDEN    "last_hidden"         /* f32 [L, hidden], after the final norm */
#define ABC_STAGE_EMBEDDING      "embedding"           /* f32 [D], the result */
#define ABC_STAGE_MULTI_VECTOR   "multi_vector"        /* f32 [L, D'], abc_embed_multi's result */

/* Called after each pipeline stage with its array (ABC_STAGE_* names). Return non-zero to stop:
 * abc_embed then returns ABC_ERR_STOPPED. */
typedef int (*abc_stage_callback)(void *user, const char *name, abc_array_dtype dtype, int ndim,
                                  const int64_t *shape, const void *data);

typedef struct {
    int n_threads;                 /* worker threads (0: number of online CPUs; ABC_NO_THREADS: 1) */
    abc_stage_callback on_stage;   /* optional */
    void *on_stage_user;
    /* Optional: the memory abc_embed and abc_embed_tokens work in (NULL: the allocator). Each call takes
     * everything it allocates from here and releases it all before returning, so the allocator is never
     * called during the call; too small a buffer fails the call with ABC_ERR_NOMEM. Size it with
     * abc_embed_arena_size (+ 63 bytes unless the buffer is 64-byte aligned). The stage callback's own
     * calls into the library allocate as usual, not from here. The buffer must outlive the context. */
    void *arena;
    size_t arena_size;
} abc_context_params;

ABC_API abc_context_params abc_context_default_params(void);

ABC_API abc_status abc_context_new(const abc_model *model, const abc_context_params *params,
                           abc_context **out, abc_error *err);
ABC_API void abc_context_free(abc_context *ctx);
/* Message of the last failed call on this context ("" after success). */
ABC_API const char *abc_context_errmsg(const abc_context *ctx);

typedef enum {
    ABC_ROLE_AUTO = 0,   /* abc: image+text → query, otherwise candidate */
    ABC_ROLE_QUERY,
    ABC_ROLE_CANDIDATE
} abc_role;

typedef struct {
    /* At most one image source: a file, encoded bytes in memory, or an RGB buffer. */
    const char *image_path;
    const uint8_t *image_data;
    size_t image_size;
    const uint8_t *rgb;          /* 8-bit RGB, `rgb_stride` bytes per row (0: width·3) */
    int rgb_width, rgb_height;
    size_t rgb_stride;
    const char *text;            /* instruction or text, UTF-8; NULL for none */
    const char *prompt;          /* raw prompt replacing the template (each <|image_pad|> takes the image) */
    abc_role role;
    /* Task instruction for presets whose prompt has one (gme: the system turn; NULL: the model's
     * default). Ignored for role candidate, which keeps the default; other presets refuse it. */
    const char *instruction;
    /* A video as frames in order (qwen2_vl files with video support, e.g. preset vlm2vec): each frame
     * is resized like an image, all must end at the same size, consecutive pairs form the temporal
     * patches (an odd count repeats the last frame) and the prompt's <|video_pad|> takes their tokens.
     * Not together with an image source. The frames are read, never kept or changed. */
    const abc_image *frames;
    int n_frames;
    /* Files with task adapters (jina-v4: "retrieval", "text-matching", "code"; abc_model_tasks): the
     * adapter this call runs with. NULL: the file's default task; other files refuse a task. */
    const char *task;
    /* Matryoshka truncation: keep the first `dim` values of the normalised embedding and normalise
     * again (abc_embed then writes `dim` floats). 0: the full abc_model_embedding_dim. Must lie in
     * [1, full] and, where the file lists model.matryoshka_dims, be one of them or full. */
    int dim;
} abc_input;

ABC_API abc_input abc_input_default(void);

/* Embeds one input; writes abc_model_embedding_dim() floats (or abc_input.dim), L2-normalised, to `out`. A
 * model without a single vector (abc_model_embedding_dim 0, e.g. preset colqwen2) returns ABC_ERR_UNSUPPORTED. */
ABC_API abc_status abc_embed(abc_context *ctx, const abc_input *input, float *out, size_t out_len);

/* Embeds inputs[0..n) one after another on this context (each exactly as abc_embed would) into
 * out[i·D .. i·D+D), D = abc_model_embedding_dim (an input with abc_input.dim fills its first dim values
 * and zeroes the rest). statuses[i] (may be NULL) receives each input's
 * status; a failed input's row is filled with NaN and the others still run. Returns ABC_OK when every
 * input succeeded, else the status of the first failure (abc_context_errmsg: "input I: <message>"
 * for that one). ABC_ERR_INVALID_ARG without touching out when the arguments themselves are bad. */
ABC_API abc_status abc_embed_batch(abc_context *ctx, const abc_input *inputs, size_t n, float *out,
                           abc_status *statuses);

/* Multi-vector (late interaction) output, for models with abc_model_multi_vector_dim D > 0 (preset
 * colqwen2): one L2-normalised D-float vector per token of the input's sequence (every token is kept:
 * prompt, image tokens and, for queries, the augmentation tokens), row-major [T][D] in `out`, T in
 * *n_vectors. Score a query against a document with MaxSim: Σ over the query's rows of the largest dot
 * product with any of the document's rows. `out_cap` is out's size in floats. Size query: out NULL and
 * out_cap 0 set *n_vectors and return ABC_OK after tokenising and preprocessing only (no model run); too
 * small a buffer sets *n_vectors and fails with ABC_ERR_INVALID_ARG, writing nothing. A model without a
 * multi-vector output returns ABC_ERR_UNSUPPORTED. The stage callback receives "multi_vector" [T, D]
 * instead of "embedding"; an arena works as for abc_embed (abc_embed_arena_size measures this call for such
 * a model). */
ABC_API abc_status abc_embed_multi(abc_context *ctx, const abc_input *input, float *out, size_t out_cap,
                                   size_t *n_vectors);

/* The arena bytes abc_embed of `input` needs on a context made with `params` (NULL: defaults; the thread
 * count matters, the arena fields are ignored). The input may name an image size without pixels:
 * rgb == NULL with rgb_width and rgb_height set (any RGB image of that size needs the same; an encoded
 * image needs its decoder's memory too, so give its bytes). Runs that embedding once, with the
 * allocator, to count. The figure is this build's: a 32-bit target needs at most a 64-bit host's. */
ABC_API abc_status abc_embed_arena_size(const abc_model *model, const abc_context_params *params,
                                        const abc_input *input, size_t *bytes, abc_error *err);
/* The most arena bytes any call on `ctx` has used so far (0 without an arena). */
ABC_API size_t abc_context_arena_used(const abc_context *ctx);

/* Lower level: token ids and pixel values prepared by the caller. `pixel_values` is
 * [n_patches][1176] in the patch order of docs/image-pipeline.md#patches (NULL when there is no image), `grid_thw` the
 * patch grid (t, h, w) with t·h·w == n_patches. Image tokens in `ids` must number n_patches/4.
 * phi3_v: `pixel_values` is [n_patches][3][336][336], the image slots (global view, then the crops
 * row-major; no zero padding slots), `grid_thw` = (1, h_crop, w_crop) with n_patches = 1 + h·w;
 * image tokens are -1 in `ids`, (h·w + 1)·144 + 1 + (h + 1)·12 of them per image run, and every text
 * chunk starts with <s> as the Phi-3-V processor writes it. The role does not matter (no adapter).
 * Files with task adapters run the default task (abc_model_default_task) and the full width: use
 * abc_embed_tokens_ex to choose them. */
ABC_API abc_status abc_embed_tokens(abc_context *ctx, const int32_t *ids, size_t n_ids,
                            const float *pixel_values, size_t n_patches, const int grid_thw[3],
                            abc_role role, float *out, size_t out_len);
/* abc_embed_tokens with abc_input's `task` and `dim`, checked and applied as abc_embed does (the task's
 * adapter; `dim` values written, truncated and normalised again; NULL and 0: the default task, the full
 * width). For the ids and pixels abc_embed prepares for an input (its "input_ids" and "pixel_values"
 * stages), the same vector as abc_embed of that input with that task and dim. A separate function so
 * that abc_embed_tokens keeps its signature (and the library its ABI). */
ABC_API abc_status abc_embed_tokens_ex(abc_context *ctx, const int32_t *ids, size_t n_ids,
                               const float *pixel_values, size_t n_patches, const int grid_thw[3],
                               abc_role role, const char *task, int dim, float *out, size_t out_len);


/* ---- the .abc weight file format (model_convert/FORMAT.md) --------------------------------------
 * What the library and abc-convert share, defined once, for any program that reads or writes .abc
 * files: magic, version, sizes, dtype and metadata codes, the q8 strip layout and the 16-bit float
 * conversions (widening is exact; narrowing rounds to nearest, ties to even). */
#define ABC_FILE_MAGIC "ABCMODEL"         /* 8 bytes at offset 0 */
#define ABC_FILE_VERSION 1u
#define ABC_FILE_HEADER_SIZE 64u
#define ABC_FILE_TENSOR_ALIGN 64u         /* tensor data offsets (and abc_model_load_from_memory buffers) */
#define ABC_FILE_MAX_NAME 1024u           /* longest tensor name or metadata key */

typedef enum {
    ABC_FILE_F32 = 0,
    ABC_FILE_F16 = 1,
    ABC_FILE_BF16 = 2,
    ABC_FILE_I32 = 3,
    ABC_FILE_U8 = 4,
    ABC_FILE_Q8_ROWS_RETIRED = 5,         /* an early q8 layout: refused with "convert again" */
    ABC_FILE_Q8 = 6,                      /* int8 blocks in strips, below */
    ABC_FILE_Q4 = 7                       /* 4-bit blocks in strips, below */
} abc_file_dtype;

enum { ABC_FILE_META_I64 = 1, ABC_FILE_META_F64 = 2, ABC_FILE_META_STR = 3 };

/* q8: a 2-D [out][in] tensor, `in` a multiple of ABC_FILE_Q8_BLOCK; element (j, k) is q[j][k] · scale[j][k /
 * BLOCK]. Stored in strips of ABC_FILE_Q8_STRIP rows (the last padded with zero rows), each strip block by
 * block: int8 [BLOCK/4][STRIP][4] (row j's k..k+3 side by side), then float32 scales [STRIP]. */
#define ABC_FILE_Q8_BLOCK 32
#define ABC_FILE_Q8_STRIP 16
#define ABC_FILE_Q8_STRIP_BLOCK_BYTES (ABC_FILE_Q8_STRIP * (ABC_FILE_Q8_BLOCK + 4))

/* q4: as q8 (same block and strip), element (j, k) is q[j][k] · scale[j][k / BLOCK] with q in [-8, 7]
 * and a float16 scale. A strip block is nibbles [BLOCK/8][STRIP][4] bytes, byte (p, j, t) holding
 * q[j][8p + t] + 8 in its low and q[j][8p + 4 + t] + 8 in its high half (so a mask and a shift give
 * q8's [k/4][STRIP][4] quads of k4 = 2p and 2p + 1), then float16 scales [STRIP]: 4.5 bits a weight. */
#define ABC_FILE_Q4_NIBBLE_BYTES (ABC_FILE_Q8_STRIP * ABC_FILE_Q8_BLOCK / 2)
#define ABC_FILE_Q4_STRIP_BLOCK_BYTES (ABC_FILE_Q4_NIBBLE_BYTES + ABC_FILE_Q8_STRIP * 2)

typedef union {
    float f;
    uint32_t u;
} abc_f32_bits;

static inline float abc_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    abc_f32_bits v;
    if (exponent == 0) {
        v.f = (float)mantissa * 5.9604644775390625e-08f; /* · 2^-24: zero or subnormal, exact in float32 */
        v.u |= sign;
    } else if (exponent == 31) {
        v.u = sign | 0x7f800000u | (mantissa << 13);
    } else {
        v.u = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    return v.f;
}

static inline float abc_bf16_to_f32(uint16_t h) {
    abc_f32_bits v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

/* float32 → float16; returns -1 (writing nothing) when the value rounds to infinity or is inf/NaN. */
static inline int abc_f32_to_f16(float f, uint16_t *out) {
    abc_f32_bits v;
    v.f = f;
    const uint16_t sign = (uint16_t)((v.u >> 16) & 0x8000);
    const uint32_t a = v.u & 0x7fffffffu;
    if (a >= 0x477ff000u) return -1;
    if (a < 0x38800000u) { /* below 2^-14: a float16 subnormal or zero */
        const uint32_t exponent = a >> 23;
        if (exponent < 102) { /* below half the smallest subnormal */
            *out = sign;
            return 0;
        }
        const uint32_t mantissa = (a & 0x7fffffu) | 0x800000u, shift = 126 - exponent;
        uint32_t h = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        *out = (uint16_t)(sign | h);
        return 0;
    }
    uint32_t h = ((a >> 23) - 112) << 10 | ((a >> 13) & 0x3ff);
    const uint32_t rest = a & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    *out = (uint16_t)(sign | h);
    return 0;
}

/* float32 → bfloat16; returns -1 when the value rounds to infinity or is inf/NaN. */
static inline int abc_f32_to_bf16(float f, uint16_t *out) {
    abc_f32_bits v;
    v.f = f;
    if ((v.u & 0x7fffffffu) >= 0x7f7f8000u) return -1;
    v.u += 0x7fffu + ((v.u >> 16) & 1);
    *out = (uint16_t)(v.u >> 16);
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* ABC_H */
