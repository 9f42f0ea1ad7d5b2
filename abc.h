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
 */
#ifndef ABC_H
#define ABC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ABC_VERSION_STRING "0.1.0"

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

/* Short constant description of a status code ("invalid argument", ...). Never NULL. */
const char *abc_status_string(abc_status status);

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
    /* Decode budget: an image claiming more than this many pixels per byte of its encoded file is
     * refused before anything is decoded (0: default 16384, above what any complete PNG, JPEG or PPM
     * reaches, so only hollow or truncated files are refused). */
    size_t max_decode_ratio;
    /* Non-zero: read the weight file once into memory instead of mapping it (for files on media that
     * may change or disappear: a mapped file truncated under a running process kills it with SIGBUS). */
    int load_into_memory;
} abc_model_params;

abc_model_params abc_model_default_params(void);

/* Maps (or reads, see load_into_memory) and validates `path`, which must be a regular file. `params` may be NULL (defaults). On failure *out is NULL. */
abc_status abc_model_load(const char *path, const abc_model_params *params, abc_model **out,
                          abc_error *err);
void abc_model_free(abc_model *model);

int abc_model_embedding_dim(const abc_model *model);
/* "abc", "vlm2vec", ... (the preset stored in the file). */
const char *abc_model_preset(const abc_model *model);
/* Human-readable multi-line description (architecture, sizes, dtypes). Owned by the model. */
const char *abc_model_description(const abc_model *model);

/* ---- tokenizer -------------------------------------------------------------------------------- */

/* Tokenizes `text` (`len` bytes, UTF-8) with the model's tokenizer; special tokens such as
 * <|im_start|> are recognised, no template is applied. Writes up to `cap` ids; *n_ids receives the
 * full count (call again with a larger buffer if *n_ids > cap; then ABC_ERR_INVALID_ARG is returned). */
abc_status abc_tokenize(const abc_model *model, const char *text, size_t len, int32_t *ids,
                        size_t cap, size_t *n_ids, abc_error *err);
/* The raw bytes of token `id` (not NUL-terminated); NULL for an invalid id. */
const char *abc_token_bytes(const abc_model *model, int32_t id, size_t *len);

/* ---- images ----------------------------------------------------------------------------------- */

typedef struct {
    int width, height;
    uint8_t *rgb;  /* width·height·3 bytes, row-major, owned: release with abc_image_free */
} abc_image;

/* Decodes PNG, JPEG or PPM/PGM to 8-bit RGB exactly as Pillow's Image.open(f).convert("RGB").
 * max_pixels: 0 for the default limit. */
abc_status abc_image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out,
                            abc_error *err);
abc_status abc_image_load(const char *path, size_t max_pixels, abc_image *out, abc_error *err);
/* The same with an explicit decode budget: max_ratio pixels per byte of encoded input (0: the default
 * 16384, which abc_image_decode and abc_image_load apply). abc_image_load* read regular files only
 * (FIFOs, devices and directories are refused) and at most 8·max_pixels + 1 MiB bytes. */
abc_status abc_image_decode_budget(const uint8_t *data, size_t size, size_t max_pixels, size_t max_ratio,
                                   abc_image *out, abc_error *err);
abc_status abc_image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                 abc_error *err);
void abc_image_free(abc_image *image);

/* ---- context and embedding -------------------------------------------------------------------- */

typedef enum { ABC_DTYPE_F32 = 0, ABC_DTYPE_U8 = 1, ABC_DTYPE_I32 = 2 } abc_array_dtype;

/* Called after each pipeline stage with its array (names as in SPEC section 7: "decoded",
 * "resized", "pixel_values", "input_ids", "position_ids", "vision_embeds", "last_hidden",
 * "embedding"). Phi-3.5-V models (architecture phi3_v) use the names of their fixture: "decoded",
 * "hd_image" (u8 [h,w,3], the padded HD image), "pixel_values" (f32 [slots,3,336,336]), "image_sizes"
 * (i32 [2]), "input_ids" (i32 [L], -1 at image tokens), "position_ids" (i32 [L]),
 * "clip_patch_features" (f32 [slots,576,C]), "image_features" (f32 [n,hidden]), "inputs_embeds",
 * "last_hidden_state" (f32 [L,hidden]), "embedding". Return non-zero to stop: abc_embed then returns
 * ABC_ERR_STOPPED. */
typedef int (*abc_stage_callback)(void *user, const char *name, abc_array_dtype dtype, int ndim,
                                  const int64_t *shape, const void *data);

typedef struct {
    int n_threads;                 /* worker threads (0: number of online CPUs) */
    abc_stage_callback on_stage;   /* optional */
    void *on_stage_user;
} abc_context_params;

abc_context_params abc_context_default_params(void);

abc_status abc_context_new(const abc_model *model, const abc_context_params *params,
                           abc_context **out, abc_error *err);
void abc_context_free(abc_context *ctx);
/* Message of the last failed call on this context ("" after success). */
const char *abc_context_errmsg(const abc_context *ctx);

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
} abc_input;

abc_input abc_input_default(void);

/* Embeds one input; writes abc_model_embedding_dim() floats (L2-normalised) to `out`. */
abc_status abc_embed(abc_context *ctx, const abc_input *input, float *out, size_t out_len);

/* Lower level: token ids and pixel values prepared by the caller. `pixel_values` is
 * [n_patches][1176] in the patch order of SPEC 4.5 (NULL when there is no image), `grid_thw` the
 * patch grid (t, h, w) with t·h·w == n_patches. Image tokens in `ids` must number n_patches/4.
 * phi3_v: `pixel_values` is [n_patches][3][336][336], the image slots (global view, then the crops
 * row-major; no zero padding slots), `grid_thw` = (1, h_crop, w_crop) with n_patches = 1 + h·w;
 * image tokens are -1 in `ids`, (h·w + 1)·144 + 1 + (h + 1)·12 of them per image run, and every text
 * chunk starts with <s> as the Phi-3-V processor writes it. The role does not matter (no adapter). */
abc_status abc_embed_tokens(abc_context *ctx, const int32_t *ids, size_t n_ids,
                            const float *pixel_values, size_t n_patches, const int grid_thw[3],
                            abc_role role, float *out, size_t out_len);

#ifdef __cplusplus
}
#endif
#endif /* ABC_H */
