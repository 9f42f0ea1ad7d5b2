/* Internal interfaces of abc-convert (Hugging Face Qwen2-VL checkpoint + PEFT adapters -> .abc). */
#ifndef ABC_CONVERT_H
#define ABC_CONVERT_H
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "writer.h"

/* ---- util.c ---- */
/* printf into err (the converter's single error-reporting convention: functions return -1 and
 * leave a message naming the file/tensor at fault). */
int cv_fail(char *err, size_t errsize, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
char *cv_strdup(const char *s);
char *cv_path_join(const char *dir, const char *name);
int cv_file_exists(const char *path);
/* Reads a whole (small) file; NUL-terminates it. */
char *cv_read_file(const char *path, size_t *len, char *err, size_t errsize);
/* Parses a JSON file; on error the message names the file. */
json_value *cv_read_json(const char *path, char *err, size_t errsize);
/* Maps the transformers >= 4.52 layout onto the hub names used in .abc files:
 * model.language_model.X -> model.X, model.visual.X -> visual.X. Returns a new string. */
char *cv_normalize_name(const char *name);
/* CPUs online (at least 1): the default thread count. */
int cv_online_cpus(void);
/* An integer-valued JSON number in [lo, hi]. */
int cv_json_int(const json_value *v, int64_t lo, int64_t hi, int64_t *out);

/* ---- dtype.c ---- */
/* The 16-bit float conversions (abc_f16_to_f32, abc_f32_to_f16, ...) and the q8 layout are abc.h's,
 * shared with the runtime. */
#define CV_Q8_BLOCK ABC_FILE_Q8_BLOCK
#define CV_Q8_STRIP ABC_FILE_Q8_STRIP
#define CV_Q8_STRIP_BLOCK_BYTES ABC_FILE_Q8_STRIP_BLOCK_BYTES
#define CV_Q4_NIBBLE_BYTES ABC_FILE_Q4_NIBBLE_BYTES
#define CV_Q4_STRIP_BLOCK_BYTES ABC_FILE_Q4_STRIP_BLOCK_BYTES
void cv_quantize_q8_row(const float *src, int64_t in, int8_t *q, float *scales);
/* The same search with quants in [-8, 7] and divisor 8 (q4, before its float16 rounding). */
void cv_quantize_q4_row(const float *src, int64_t in, int8_t *q, float *scales);

/* ---- quant.c ---- */
/* cv_quantize_q8_row's result for nblocks consecutive blocks of 32, computed side by side (vectorised;
 * bit-identical). Thread-safe. */
void cv_quantize_q8_blocks(const float *src, int64_t nblocks, int8_t *q, float *scales);
typedef void (*cv_q8_kernel)(const float *src, int64_t nblocks, int8_t *q, float *scales);
/* The kernel of one ISA level (0 baseline, 1 AVX2, 2 AVX-512F); NULL when this CPU or build lacks it. */
cv_q8_kernel cv_q8_kernel_for(int level);
/* The same for q8's or q4's search (dtype ABC_FILE_Q8 or ABC_FILE_Q4); cv_quantize_q4_blocks is
 * cv_quantize_q4_row's result, as cv_quantize_q8_blocks is q8's. */
cv_q8_kernel cv_quant_kernel_for(uint32_t dtype, int level);
void cv_quantize_q4_blocks(const float *src, int64_t nblocks, int8_t *q, float *scales);
/* A block-quantized storage type: rows of `in` values (a multiple of block) stored in strips of
 * strip_rows rows, strip_bytes(in) bytes each. encode turns `rows` rows (at most strips·strip_rows;
 * the rest of the last strip is zero padding) into `strips` whole strips at dst. */
typedef struct {
    uint32_t dtype;
    const char *name;
    int block;
    int strip_rows;
    size_t (*strip_bytes)(int64_t in);
    int (*encode)(const float *src, int64_t rows, int64_t in, int64_t strips, void *dst, char *err, size_t errsize);
} cv_quant_type;
/* NULL for the plain types (f32, f16, bf16). */
const cv_quant_type *cv_quant_find(uint32_t dtype);

/* ---- safetensors.c ---- */
typedef enum { ST_F32, ST_F16, ST_BF16 } st_dtype;
#define ST_MAX_DIMS 8

typedef struct {
    char *name;          /* as stored in the file, later possibly normalised by the caller */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t offset;     /* absolute position of the data in its file */
    uint64_t nbytes;
    int file;            /* index into st_set.files */
} st_tensor;

typedef struct {
    char *path;
    int fd;
    uint64_t size;
} st_file;

typedef struct {
    st_file *files;
    size_t n_files;
    st_tensor *tensors;
    size_t n_tensors;
} st_set;

int st_add_file(st_set *set, const char *path, char *err, size_t errsize);
/* model.safetensors, or every shard named by model.safetensors.index.json. */
int st_open_checkpoint(st_set *set, const char *dir, char *err, size_t errsize);
const st_tensor *st_find(const st_set *set, const char *name);
uint64_t st_numel(const st_tensor *t);
const char *st_dtype_name(st_dtype d);
/* Reads every element of t widened to float32 (exact for bf16/f16). */
int st_read_f32(const st_set *set, const st_tensor *t, float *dst, char *err, size_t errsize);
/* Elements [first, first + count) only (row-major order). */
int st_read_f32_range(const st_set *set, const st_tensor *t, uint64_t first, uint64_t count, float *dst, char *err, size_t errsize);
void st_close(st_set *set);

/* ---- config.c ---- */
typedef enum { ARCH_QWEN2_VL, ARCH_PHI3_V, ARCH_QWEN2_5_VL } model_arch;
#define QWEN25_MAX_FULLATT 1024  /* vision_config.fullatt_block_indexes entries */
#define PHI3_MAX_ROPE_FACTORS 1024   /* head_dim / 2 entries each */

typedef struct {
    model_arch arch;
    /* language model */
    int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab;
    double rms_eps, rope_theta;
    int64_t mrope_section[3];
    int tie_embeddings;
    /* vision tower */
    int64_t v_depth, v_embed, v_heads, v_mlp, v_patch, v_temporal_patch, v_merge, v_in_channels, v_out;
    /* qwen2_5_vl: window attention (window_size in pixels) except in the listed blocks */
    int64_t v_window, n_fullatt, fullatt[QWEN25_MAX_FULLATT];
    /* special tokens; -1 when the config does not say */
    int64_t image_token, vision_start_token, vision_end_token, video_token;
    /* preprocessor_config.json */
    int64_t min_pixels, max_pixels;
    double image_mean[3], image_std[3];
    /* phi3_v (Phi-3.5-vision): su/longrope RoPE (rope_su = 0: no rope_scaling), the CLIP tower as
     * configured (clip_layers counts every layer of the checkpoint; the runtime stores and runs
     * clip_layers - 1 of them), the HD transform's crop count, <s> */
    int rope_su;
    double rope_short[PHI3_MAX_ROPE_FACTORS], rope_long[PHI3_MAX_ROPE_FACTORS];
    int64_t max_position, original_max_position;
    int64_t clip_hidden, clip_intermediate, clip_heads, clip_layers, clip_image, clip_patch;
    double clip_eps;
    int64_t num_crops, num_img_tokens, bos_token;
    /* jina-embeddings-v4's config.json "matryoshka_dims" (n_matryoshka = 0: none) */
    int64_t matryoshka[32];
    int n_matryoshka;
} model_config;

int config_load(const char *dir, model_config *c, char *err, size_t errsize);
const char *config_arch_name(model_arch arch); /* config.json's model_type of the family */

/* ---- peft.c ---- */
typedef struct {
    char *module;              /* hub name of the adapted Linear, e.g. model.layers.0.self_attn.q_proj */
    const st_tensor *A, *B;    /* [r, in], [out, r] */
    const st_tensor *magnitude;/* DoRA: [out]; NULL for plain LoRA */
    int64_t rank;
    double scale;              /* alpha / r, or alpha / sqrt(r) with use_rslora */
} lora_module;

typedef struct {
    char *name;                /* hub name of the parameter */
    const st_tensor *t;
} adapter_param;

typedef struct {
    char *dir;
    st_set st;
    int dora;
    lora_module *modules;
    size_t n_modules;
    adapter_param *params;     /* modules_to_save and other full parameters (mlp_head.*, temperature.temp) */
    size_t n_params;
    int64_t max_rank;
} peft_adapter;

int peft_load(const char *dir, peft_adapter *a, char *err, size_t errsize);
/* A multi-task adapter (jina-embeddings-v4's released adapters/: one peft adapter whose Linear layers
 * hold a LoRA per task, tensors <module>.lora_A.<task>.weight, or .lora_A.default.<task>.weight):
 * peft_list_tasks gives its task names in byte order (a new array of new strings; every name passes
 * peft_task_name_ok), peft_load_task one task's LoRA as a plain adapter (one r and lora_alpha for all). */
#define PEFT_MAX_TASK_NAME 64
int peft_list_tasks(const char *dir, char ***names, size_t *n_names, char *err, size_t errsize);
int peft_load_task(const char *dir, const char *task, peft_adapter *a, char *err, size_t errsize);
/* 1..PEFT_MAX_TASK_NAME letters, digits, '-' or '_' (the names task_adapter.names can hold). */
int peft_task_name_ok(const char *name, size_t len);
void peft_free(peft_adapter *a);
const lora_module *peft_find_module(const peft_adapter *a, const char *module);
const adapter_param *peft_find_param(const peft_adapter *a, const char *name);
/* W += scale·B·A (LoRA), or the DoRA merge, exactly in peft's float32 operation order, on rows
 * [row0, row0 + rows) of the module's [out, in] weight, held in W [rows, in]. Both merges treat every
 * output row on its own, so merging a row range equals merging the whole matrix and then taking
 * those rows (how fused phi3_v qkv_proj / gate_up_proj weights are merged, then split). */
int peft_merge(const peft_adapter *a, const lora_module *m, float *W, int64_t row0, int64_t rows, int64_t in, char *err, size_t errsize);

/* ---- convert.c ---- */
/* The tensor classes of the mixed-precision policy (--policy): the language model's attention
 * projections, its MLP gate/up and down projections, the token embedding, the vision tower, the merger /
 * image projection, the embedding head (mlp_head). */
enum { CV_CLASS_ATTN, CV_CLASS_MLP, CV_CLASS_DOWN, CV_CLASS_EMBED, CV_CLASS_VISION, CV_CLASS_MERGER, CV_CLASS_HEAD,
       CV_N_CLASSES };
typedef struct {
    const char *hf_dir;
    const char *out_path;
    const char *preset;             /* "abc", "vlm2vec", "gme", "colqwen2", "jina-v4", "vlm2vec-phi3v" or "nomic" */
    const char **merge_adapters;
    size_t n_merge_adapters;
    const char *query_adapter;      /* NULL when none */
    const char **task_adapters;     /* --task-adapter NAME=DIR, kept apart and chosen per call */
    size_t n_task_adapters;
    const char *task_adapters_dir;  /* --task-adapters DIR: one multi-task adapter (jina's release); NULL when none */
    uint32_t dtype;                 /* ABC_FILE_F32, _F16, _BF16, _Q8 or _Q4 (--dtype) */
    uint32_t class_dtype[CV_N_CLASSES]; /* per class (cv_policy_init, cv_policy_parse) */
    int quiet;
    int threads;                    /* conversion workers; 0 = every online CPU */
    int progress;                   /* a progress line on stderr (main.c: only when it is a terminal) */
    int64_t num_crops;              /* phi3_v: overrides the checkpoint's num_crops; 0 = keep it */
} convert_options;

int convert_model(const convert_options *opt, char *err, size_t errsize);
/* 1 when some model family takes the preset, else 0 with the error listing them all. */
int cv_known_preset(const char *preset, char *err, size_t errsize);
/* "f32", "f16", "bf16", "q8", "q4" -> ABC_FILE_*; -1 when unknown. */
int cv_dtype_parse(const char *name, uint32_t *dtype);
const char *cv_dtype_name(uint32_t dtype);
/* Every class gets opt->dtype, except with q4, whose default keeps the measured sensitive classes in
 * q8 (README's "4-bit weights"). */
void cv_policy_init(convert_options *opt);
/* Overrides from "class=dtype[,class=dtype...]" (classes attn, mlp, down, embed, vision, merger, head;
 * text = attn + mlp + down). */
int cv_policy_parse(convert_options *opt, const char *spec, char *err, size_t errsize);
/* "attn=q4,mlp=q4,...,head=q8" into out. */
void cv_policy_describe(const convert_options *opt, char *out, size_t size);

#endif
