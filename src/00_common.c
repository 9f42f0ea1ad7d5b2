/* abc.c — image + instruction → embedding vector (ABC and VLM2Vec on Qwen2-VL), in portable C.
 *
 * One source file, in data-flow order:
 *   1. common definitions       (this section: includes, errors, memory, shared structs)
 *   2. platform and threads     (thread pool, CPU features)
 *   3. weight file              (.abc mapping and validation, see model_convert/FORMAT.md)
 *   4. tokenizer                (Unicode tables, NFC, Qwen2 pre-tokenizer, byte-level BPE)
 *   5. image decode             (PNG, JPEG, PPM/PGM → 8-bit RGB as Pillow)
 *   6. preprocessing            (smart_resize, Pillow bicubic, pixel values, patches)
 *   7. kernels                  (matmul, attention, norms; scalar + SIMD per ISA behind one dispatch)
 *   8. vision encoder           (Qwen2-VL ViT + merger)
 *   9. language model           (Qwen2 decoder, multimodal RoPE)
 *  10. pooling and heads        (mean / last token, mlp_head, L2)
 *  11. public API               (abc.h)
 *
 * Build: cc -O2 -c abc.c (C11, libc, libm, pthreads). The contract is ../SPEC.md (shared/SPEC.md).
 */
#define _GNU_SOURCE 1
#include "abc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
/* SIMD kernels (section 7) pick their instruction set at run time with per-function target attributes. */
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

/* ================================================================================================
 * 1. Common definitions: errors, memory, shared structs
 * ================================================================================================ */

#define ABC_DEFAULT_MAX_IMAGE_PIXELS ((size_t)4 * 12845056 * 4)
#define ABC_DEFAULT_MAX_TOKENS 32768

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Fills *err (if not NULL) and returns `code`, so callers can write `return fail(err, ...)`. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static abc_status fail(abc_error *err, abc_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void clear_error(abc_error *err) {
    if (err) {
        err->code = ABC_OK;
        err->message[0] = 0;
    }
}

/* All allocations go through here so tests can inject failures (build with -DABC_FAULT_INJECTION and
 * set abc_test_fail_after: the N-th allocation from then on fails). */
#ifdef ABC_FAULT_INJECTION
static _Atomic long abc_test_fail_after = -1;
static bool inject_failure(void) {
    long n = atomic_load(&abc_test_fail_after);
    if (n < 0) return false;
    if (atomic_fetch_sub(&abc_test_fail_after, 1) == 0) return true;
    return false;
}
#else
static inline bool inject_failure(void) { return false; }
#endif

static void *xmalloc(size_t n) {
    if (inject_failure()) return NULL;
    return malloc(n ? n : 1);
}
static void *xcalloc(size_t count, size_t size) {
    if (inject_failure()) return NULL;
    if (size && count > SIZE_MAX / size) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}
static void *xrealloc(void *p, size_t n) {
    if (inject_failure()) return NULL;
    return realloc(p, n ? n : 1);
}
/* 64-byte aligned (for SIMD loads); release with free(). */
static void *xmalloc_aligned(size_t n) {
    if (inject_failure()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) & ~(size_t)63 : 64) != 0) return NULL;
    return p;
}

/* Overflow-checked size arithmetic: returns false on overflow. */
static bool mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* ---- workspace: one grow-only aligned float buffer (a context's forward pass; a thread pool's
 * shared operands) ---- */

typedef struct {
    float *data;
    size_t cap; /* floats */
} workspace;

#define WORKSPACE_ALIGN_FLOATS 16 /* 64 bytes */

static void workspace_free(workspace *ws) {
    free(ws->data);
    ws->data = NULL;
    ws->cap = 0;
}

/* Carves `count` arrays of sizes[i] floats (each 64-byte aligned) out of the workspace, growing it
 * when needed; arrays handed out earlier become invalid. False when the total overflows or memory
 * runs out. */
static bool workspace_carve(workspace *ws, int count, const size_t *sizes, float **arrays[]) {
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        size_t n = sizes[i];
        if (n > SIZE_MAX - WORKSPACE_ALIGN_FLOATS) return false;
        n = (n + WORKSPACE_ALIGN_FLOATS - 1) / WORKSPACE_ALIGN_FLOATS * WORKSPACE_ALIGN_FLOATS;
        if (total > SIZE_MAX - n) return false;
        total += n;
    }
    if (total > SIZE_MAX / sizeof(float)) return false;
    if (total > ws->cap) {
        float *data = xmalloc_aligned(total * sizeof(float));
        if (!data) return false;
        free(ws->data);
        ws->data = data;
        ws->cap = total;
    }
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        *arrays[i] = ws->data + at;
        at += (sizes[i] + WORKSPACE_ALIGN_FLOATS - 1) / WORKSPACE_ALIGN_FLOATS * WORKSPACE_ALIGN_FLOATS;
    }
    return true;
}

/* A growable int32 array (token ids). */
typedef struct {
    int32_t *data;
    size_t len, cap;
} int_vec;

static bool int_vec_push(int_vec *v, int32_t x) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *d = xrealloc(v->data, cap * sizeof *d);
        if (!d) return false;
        v->data = d;
        v->cap = cap;
    }
    v->data[v->len++] = x;
    return true;
}
static void int_vec_free(int_vec *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* ---- weight-file tensors (section 3 fills them) ---- */

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2, DT_I32 = 3, DT_U8 = 4, DT_Q8_ROWS_RETIRED = 5, DT_Q8 = 6 };

typedef struct {
    const char *name;  /* points into the mapping, not NUL-terminated */
    uint32_t name_len;
    uint32_t dtype;
    int ndim;
    int64_t shape[4];  /* unused dims are 1 */
    const void *data;  /* inside the read-only mapping */
    size_t nbytes;
} tensor;

typedef struct {
    const char *key;
    uint32_t key_len;
    uint32_t type; /* 1 i64, 2 f64, 3 string */
    uint64_t count;
    const void *payload;
} meta_entry;

typedef struct {
    const uint8_t *base;  /* the mapping */
    size_t size;
    uint32_t version;
    meta_entry *meta;
    uint32_t n_meta;
    tensor *tensors;
    uint32_t n_tensors;
    bool mapped;          /* munmap (true) or free (false) on close */
} weight_file;

/* Section 3 */
static abc_status weight_file_open(const char *path, weight_file *wf, abc_error *err);
static void weight_file_close(weight_file *wf);
static const tensor *wf_tensor(const weight_file *wf, const char *name);
static const meta_entry *wf_meta(const weight_file *wf, const char *key);
/* Typed metadata getters: return false (and fill err) when missing or of the wrong type. */
static bool wf_int(const weight_file *wf, const char *key, int64_t *out, abc_error *err);
static bool wf_f64(const weight_file *wf, const char *key, double *out, abc_error *err);
static bool wf_str(const weight_file *wf, const char *key, const char **s, size_t *len, abc_error *err);
static bool wf_int_array(const weight_file *wf, const char *key, int64_t *out, size_t count, abc_error *err);
static bool wf_f64_array(const weight_file *wf, const char *key, double *out, size_t count, abc_error *err);
static size_t dtype_size(uint32_t dtype); /* bytes per element; 0 for block formats */
static const char *dtype_name(uint32_t dtype);

/* ---- section 4: tokenizer ---- */
typedef struct tokenizer tokenizer;
static abc_status tokenizer_load(const weight_file *wf, tokenizer **out, abc_error *err);
static void tokenizer_free(tokenizer *tok);
/* Appends the ids of `text` to `ids`; added/special tokens are matched first. */
static abc_status tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int_vec *ids,
                                   abc_error *err);
static const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len);
/* The id the tokenizer's post-processor puts before every encoded text (SentencePiece models: <s>),
 * or -1 when it adds none (Qwen2). tokenizer_encode never adds it; callers that need it do. */
static int32_t tokenizer_bos_id(const tokenizer *tok);
/* The model's tokenizer (section 11 owns struct abc_model). */
static const tokenizer *model_tokenizer(const abc_model *m);

/* ---- section 5: image decode ---- */
static abc_status image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out,
                               abc_error *err);

/* ---- section 6: preprocessing ---- */
typedef struct {
    int factor;                    /* 28 */
    int64_t min_pixels, max_pixels;
    bool two_stage;                /* abc: qwen_vl_utils resize first */
    int64_t stage1_min_pixels, stage1_max_pixels;
    float mean[3], std[3];
    int patch_size, temporal_patch_size, merge_size;
} preprocess_config;

/* Resizes `src` as the preset requires into *resized (owned by caller; may alias nothing), then builds
 * the patch matrix pixel_values [n_patches][C·T·P·P] (caller frees) and the grid (t, h, w). */
static abc_status preprocess_image(const abc_image *src, const preprocess_config *cfg,
                                   abc_image *resized, float **pixel_values, int64_t *n_patches,
                                   int grid_thw[3], abc_error *err);

/* Phi-3.5-V HD transform (SPEC 11): the image is resized (Pillow bilinear, portrait images transposed
 * first) so that s·ceil(s/ratio) ≤ num_crops crops of crop_size fit, padded with white to whole crops,
 * normalised, then cut into slots: slot 0 the crop_size² bicubic global view, then the h_crop × w_crop
 * crops row-major. pixel_values (caller frees) is [1 + h_crop·w_crop][3][crop_size][crop_size];
 * *hd_image (caller frees .rgb; may be NULL) receives the padded HD image before normalisation. */
typedef struct {
    int num_crops;   /* 4 for VLM2Vec's evaluation, 16 in its demo */
    int crop_size;   /* 336 */
    float mean[3], std[3];
} hd_preprocess_config;
static abc_status preprocess_hd_image(const abc_image *src, const hd_preprocess_config *cfg, abc_image *hd_image,
                                      float **pixel_values, int *h_crop, int *w_crop, abc_error *err);

/* ---- section 2: threads ---- */
typedef struct thread_pool thread_pool;
typedef void (*pool_task_fn)(void *arg, int task, int thread);
static abc_status thread_pool_new(int n_threads, thread_pool **out);
static void thread_pool_free(thread_pool *pool);
static int thread_pool_size(const thread_pool *pool);
/* Runs fn(arg, task, thread) for task in [0, n_tasks) on the pool (the caller thread participates)
 * and returns when all are done. Not reentrant: one run at a time per pool. */
static void thread_pool_run(thread_pool *pool, int n_tasks, pool_task_fn fn, void *arg);

/* ---- section 7: kernels (one dispatch point; scalar reference + SIMD per ISA) ---- */

/* Reads row `row` of a 2-D weight tensor (f32/f16/bf16/q8) into f32 `out` (embedding lookup). */
static void tensor_row_f32(const tensor *t, int64_t row, float *out);
/* y[n][out] = x[n][in] · W[out][in]ᵀ (+ bias[out]) for a 2-D weight tensor of any stored dtype;
 * bias may be NULL (always f32 when present). Uses the pool's threads. */
static void matmul(thread_pool *pool, float *y, const float *x, int64_t n, const tensor *W,
                   const tensor *bias);
/* The same for a plain f32 [out][in] matrix (LoRA factors, heads built at run time). */
static void matmul_f32(thread_pool *pool, float *y, const float *x, int64_t n, const float *W,
                       int64_t out_dim, int64_t in_dim, const float *bias);
/* Multi-head scaled-dot-product attention, softmax(q·kᵀ/√head_dim)·v, without materialising more than
 * a block of scores. q: n rows of n_heads·head_dim (row stride q_stride floats); k, v: n rows of
 * n_kv_heads·head_dim (row stride kv_stride); out: n rows of n_heads·head_dim (dense). Query head h
 * uses kv head h / (n_heads / n_kv_heads). causal: row i sees keys 0..i only. */
static void attention(thread_pool *pool, float *out, const float *q, const float *k, const float *v,
                      int64_t n, int n_heads, int n_kv_heads, int head_dim, int64_t q_stride,
                      int64_t kv_stride, bool causal);
/* Row-wise norms over `dim` (n rows split over the pool, in place allowed). Weights/biases are f32 1-D tensors. */
static void rms_norm(thread_pool *pool, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps);
static void layer_norm(thread_pool *pool, float *out, const float *x, const float *w, const float *b, int64_t n,
                       int64_t dim, float eps);
