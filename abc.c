/* SPDX-License-Identifier: MIT */
/* abc.c — image + instruction → embedding vector (ABC and VLM2Vec on Qwen2-VL and Phi-3.5-V), in portable C.
 *
 * This file and abc.h are the whole library: vendor both, compile this one (C11; libc, libm, pthreads).
 * The behaviour it implements is written down in docs/ (model math, prompts, image pipeline,
 * tolerances) and model_convert/FORMAT.md (the .abc file). One source file, in data-flow order:
 *   1. common definitions       (this section: includes, errors, memory, shared structs)
 *   2. platform and threads     (thread pool, CPU features)
 *   3. weight file              (.abc mapping and validation)
 *   4. tokenizer                (generated Unicode tables, NFC, Qwen2 pre-tokenizer, byte-level BPE)
 *   5. image decode             (PNG, JPEG, PPM/PGM → 8-bit RGB as Pillow)
 *   6. preprocessing            (smart_resize, Pillow bicubic, pixel values, patches; Phi-3.5-V HD)
 *   7. kernels                  (matmul, attention, norms; scalar + SIMD per ISA behind one table),
 *                               7e the shared layers (linear + optional LoRA)
 *   8. vision encoders          (Qwen2-VL ViT + merger; CLIP + HD layout)
 *   9. language model           (Qwen2/Phi-3 decoder, multimodal RoPE)
 *  10. pooling and heads        (mean / last token, mlp_head, L2)
 *  11. the model and the API    (11a what families share and the pipeline driver, 11b qwen2_vl,
 *                               11c phi3_v, 11d the family table and loading, 11e the abc.h API)
 *
 * A new model family is a model_family (11a) in a section of its own plus one entry in
 * model_families (11d).
 */
#define _GNU_SOURCE 1
#include "abc.h"

/* ABC_BARE_METAL: the configuration for firmware without an OS (abc.h lists the options it sets). */
#if defined(ABC_BARE_METAL)
#ifndef ABC_NO_THREADS
#define ABC_NO_THREADS 1
#endif
#ifndef ABC_NO_MMAP
#define ABC_NO_MMAP 1
#endif
#ifndef ABC_NO_STDIO
#define ABC_NO_STDIO 1
#endif
#endif
/* Without a file system there is nothing to map. */
#if defined(ABC_NO_STDIO) && !defined(ABC_NO_MMAP)
#define ABC_NO_MMAP 1
#endif

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(ABC_NO_THREADS)
#include <pthread.h>
#include <unistd.h>
#endif
#if !defined(ABC_NO_MMAP)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
/* SIMD kernels (section 7) pick their instruction set at run time with per-function target attributes. */
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#if (defined(__aarch64__) || defined(__arm__)) && defined(__linux__)
#include <sys/auxv.h>
#endif
/* Section 7c's NEON kernels: always on aarch64; on 32-bit Arm when the build targets NEON with VFPv4
 * (-mfpu=neon-vfpv4), whose fused multiply-add the kernels need to match the aarch64 arithmetic. */
#if defined(__ARM_NEON) && !defined(ABC_NO_SIMD) && (defined(__aarch64__) || defined(__ARM_FEATURE_FMA))
#define ABC_NEON_KERNELS 1
#endif

/* ================================================================================================
 * 1. Common definitions: errors, memory, shared structs
 * ================================================================================================ */

#define ABC_DEFAULT_MAX_IMAGE_PIXELS ((size_t)4 * 12845056 * 4)
#define ABC_DEFAULT_MAX_TOKENS 32768
/* Decode budget: decoded pixels per byte of encoded image. No complete image of a supported format comes
 * near it (PNG's densest, 1-bit rows deflated at zlib's 1032:1, is about 8,300 pixels per byte; JPEG's
 * is 512: a DC code per 8×8 block; binary PPM is at most 1), so it only refuses files whose header
 * claims far more pixels than their data can hold: hollow JPEGs, truncated PNGs. */
#define ABC_DEFAULT_MAX_DECODE_RATIO 16384

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

/* ---- memory ----
 * Every allocation of the library goes through xmalloc, xcalloc, xrealloc or xmalloc_aligned, and every
 * release through free(), which this file redirects to xfree (after its definition below). The memory
 * comes from, in this order:
 *  - the context's arena (abc_context_params.arena) while abc_embed runs on it: a stack of blocks in the
 *    caller's memory; a block's space is reused once it and every block above it are freed;
 *  - ABC_MALLOC/ABC_FREE when the build defines them (and in ABC_BARE_METAL builds, over malloc/free):
 *    blocks carry their own alignment header, so nothing else (realloc, posix_memalign) is needed;
 *  - otherwise malloc, calloc, realloc, posix_memalign and free. */

#if defined(ABC_MALLOC) != defined(ABC_FREE)
#error "define both ABC_MALLOC(size) and ABC_FREE(ptr), or neither"
#endif
#if defined(ABC_MALLOC) || defined(ABC_BARE_METAL)
#ifndef ABC_MALLOC
#define ABC_MALLOC(size) malloc(size)
#define ABC_FREE(ptr) free(ptr)
#endif

/* Stored just below each block's 64-byte aligned data: how far back the allocator's pointer is, and
 * the size asked for (for realloc). */
typedef struct {
    size_t offset, size;
} sys_block;

static void *sys_malloc_aligned(size_t n) {
    if (n > SIZE_MAX - 64 - sizeof(sys_block)) return NULL;
    uint8_t *raw = ABC_MALLOC(n + 64 + sizeof(sys_block));
    if (!raw) return NULL;
    uintptr_t data = ((uintptr_t)raw + sizeof(sys_block) + 63) & ~(uintptr_t)63;
    sys_block *b = (sys_block *)data - 1;
    b->offset = (size_t)(data - (uintptr_t)raw);
    b->size = n;
    return (void *)data;
}
static void sys_free(void *p) {
    if (p) ABC_FREE((uint8_t *)p - ((sys_block *)p - 1)->offset);
}
static void *sys_malloc(size_t n) { return sys_malloc_aligned(n); }
static void *sys_calloc(size_t n) {
    void *p = sys_malloc_aligned(n);
    if (p) memset(p, 0, n);
    return p;
}
static void *sys_realloc(void *p, size_t n) {
    void *q = sys_malloc_aligned(n);
    if (q && p) {
        memcpy(q, p, MIN(((sys_block *)p - 1)->size, n));
        sys_free(p);
    }
    return q;
}
#else
static void *sys_malloc(size_t n) { return malloc(n); }
static void *sys_calloc(size_t n) { return calloc(n, 1); }
static void *sys_realloc(void *p, size_t n) { return realloc(p, n); }
static void *sys_malloc_aligned(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, n) == 0 ? p : NULL;
}
static void sys_free(void *p) { free(p); }
#endif

/* The arena: blocks stacked from the bottom, each behind a 64-byte header (which keeps the data
 * 64-byte aligned). Measuring (abc_embed_arena_size) stacks the same offsets but takes each block from
 * the system, so the peak is the size a real arena needs. */
typedef struct arena_block {
    struct arena_block *prev; /* the block below; NULL for the first */
    size_t start;             /* offset of this header in the arena */
    size_t size;              /* bytes asked for */
    bool freed;
} arena_block;
#define ARENA_HEADER ((size_t)64)
_Static_assert(sizeof(arena_block) <= 64, "an arena block's header must fit in ARENA_HEADER");

typedef struct {
    uint8_t *base;     /* the caller's memory, from its first 64-byte boundary */
    size_t cap;        /* usable bytes from base */
    size_t top, peak;  /* bytes in use; the most since the context was made */
    size_t needed;     /* the top a failed allocation asked for (0: none failed) */
    arena_block *last;
    bool measure;
} mem_arena;

/* The arena allocations come from while an abc_embed runs on a context that has one (set and
 * restored by that call, on its own thread; kernels never allocate on the pool's workers). */
#if defined(ABC_NO_THREADS)
static mem_arena *active_arena;
#else
static _Thread_local mem_arena *active_arena;
#endif

static bool arena_round(size_t n, size_t *out) {
    if (n > SIZE_MAX - 63) return false;
    *out = ((n ? n : 1) + 63) & ~(size_t)63;
    return true;
}

/* Whether the top may move to `end` (a measuring arena has no end); records the need when not. */
static bool arena_room(mem_arena *a, size_t end) {
    if (a->measure || end <= a->cap) return true;
    if (end > a->needed) a->needed = end;
    return false;
}
static void arena_raise(mem_arena *a, size_t end) {
    a->top = end;
    if (end > a->peak) a->peak = end;
}

static void *arena_alloc(mem_arena *a, size_t n) {
    size_t rounded;
    if (!arena_round(n, &rounded) || rounded > SIZE_MAX - ARENA_HEADER - a->top) return NULL;
    const size_t start = a->top, end = start + ARENA_HEADER + rounded;
    if (!arena_room(a, end)) return NULL;
    arena_block *b = a->measure ? sys_malloc_aligned(ARENA_HEADER + rounded) : (arena_block *)(a->base + start);
    if (!b) return NULL;
    arena_raise(a, end);
    b->prev = a->last;
    b->start = start;
    b->size = n;
    b->freed = false;
    a->last = b;
    return (uint8_t *)b + ARENA_HEADER;
}

static bool arena_owns(const mem_arena *a, const void *p) {
    if (!a->measure) return (const uint8_t *)p >= a->base && (const uint8_t *)p < a->base + a->cap;
    for (const arena_block *b = a->last; b; b = b->prev)
        if ((const uint8_t *)b + ARENA_HEADER == p) return true;
    return false;
}

static void arena_free(mem_arena *a, void *p) {
    ((arena_block *)((uint8_t *)p - ARENA_HEADER))->freed = true;
    while (a->last && a->last->freed) {
        arena_block *top = a->last;
        a->top = top->start;
        a->last = top->prev;
        if (a->measure) sys_free(top);
    }
}

static void *arena_realloc(mem_arena *a, void *p, size_t n) {
    arena_block *b = (arena_block *)((uint8_t *)p - ARENA_HEADER);
    size_t rounded;
    if (!arena_round(n, &rounded) || rounded > SIZE_MAX - ARENA_HEADER - b->start) return NULL;
    if (b == a->last) { /* the top block grows or shrinks in place */
        const size_t end = b->start + ARENA_HEADER + rounded;
        if (!arena_room(a, end)) return NULL;
        if (a->measure) {
            arena_block *nb = sys_malloc_aligned(ARENA_HEADER + rounded);
            if (!nb) return NULL;
            memcpy(nb, b, ARENA_HEADER + MIN(b->size, n));
            sys_free(b);
            a->last = b = nb;
        }
        arena_raise(a, end);
        b->size = n;
        return (uint8_t *)b + ARENA_HEADER;
    }
    void *q = arena_alloc(a, n);
    if (!q) return NULL;
    memcpy(q, p, MIN(b->size, n));
    arena_free(a, p);
    return q;
}

/* Everything in the arena released at once (the end of an abc_embed). */
static void arena_reset(mem_arena *a) {
    while (a->last) {
        arena_block *b = a->last;
        a->last = b->prev;
        if (a->measure) sys_free(b);
    }
    a->top = 0;
}

static void *xmalloc(size_t n) {
    if (inject_failure()) return NULL;
    if (active_arena) return arena_alloc(active_arena, n);
    return sys_malloc(n ? n : 1);
}
static void *xcalloc(size_t count, size_t size) {
    if (inject_failure()) return NULL;
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = (count ? count : 1) * (size ? size : 1);
    if (active_arena) {
        void *p = arena_alloc(active_arena, n);
        if (p) memset(p, 0, n);
        return p;
    }
    return sys_calloc(n);
}
static void *xrealloc(void *p, size_t n) {
    if (inject_failure()) return NULL;
    if (active_arena && (!p || arena_owns(active_arena, p)))
        return p ? arena_realloc(active_arena, p, n) : arena_alloc(active_arena, n);
    return sys_realloc(p, n ? n : 1);
}
/* 64-byte aligned (for SIMD loads); release with free(). */
static void *xmalloc_aligned(size_t n) {
    if (inject_failure()) return NULL;
    if (active_arena) return arena_alloc(active_arena, n);
    if (n > SIZE_MAX - 63) return NULL;
    return sys_malloc_aligned(n ? (n + 63) & ~(size_t)63 : 64);
}
static void xfree(void *p) {
    if (!p) return;
    if (active_arena && arena_owns(active_arena, p)) arena_free(active_arena, p);
    else sys_free(p);
}
/* Every free() below releases through xfree: library memory may live in an arena or come from
 * ABC_MALLOC. (A file that includes abc.c and frees its own malloc'd memory may #undef free.) */
#define free(p) xfree(p)

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

enum { DT_F32 = ABC_FILE_F32, DT_F16 = ABC_FILE_F16, DT_BF16 = ABC_FILE_BF16, DT_I32 = ABC_FILE_I32, DT_U8 = ABC_FILE_U8,
       DT_Q8_ROWS_RETIRED = ABC_FILE_Q8_ROWS_RETIRED, DT_Q8 = ABC_FILE_Q8, DT_Q4 = ABC_FILE_Q4 };

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
    bool borrowed;        /* the caller's buffer (abc_model_load_from_memory): neither */
} weight_file;

/* Section 3 */
static abc_status weight_file_open_ex(const char *path, bool load_into_memory, weight_file *wf, abc_error *err);
/* Mapped where the platform maps (the tests open weight files this way). */
#define weight_file_open(path, wf, err) weight_file_open_ex((path), false, (wf), (err))
static abc_status weight_file_borrow(const void *data, size_t size, weight_file *wf, abc_error *err);
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
/* The same, refusing (ABC_ERR_TOO_LARGE) as soon as `ids` would hold more than max_ids ids in all; long
 * words that cannot fit are refused before they are encoded. */
static abc_status tokenizer_encode_max(const tokenizer *tok, const char *text, size_t len, size_t max_ids,
                                       int_vec *ids, abc_error *err);
static const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len);
/* The id the tokenizer's post-processor puts before every encoded text (SentencePiece models: <s>),
 * or -1 when it adds none (Qwen2). tokenizer_encode never adds it; callers that need it do. */
static int32_t tokenizer_bos_id(const tokenizer *tok);
/* The model's tokenizer (section 11 owns struct abc_model). */
static const tokenizer *model_tokenizer(const abc_model *m);

/* ---- section 5: image decode ---- */
static abc_status image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out,
                               abc_error *err);
/* With the decode budget (pixels per input byte; 0: ABC_DEFAULT_MAX_DECODE_RATIO). */
static abc_status image_decode_budget(const uint8_t *data, size_t size, size_t max_pixels, size_t max_ratio,
                                      abc_image *out, abc_error *err);
static abc_status image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                    abc_error *err);
#if !defined(ABC_NO_MMAP) && !defined(ABC_NO_STDIO)
/* File reading shared with section 3 (POSIX builds): regular files only (never blocks on a FIFO), exact sizes. */
static abc_status open_regular_file(const char *path, const char *what, int *fd_out, uint64_t *size, abc_error *err);
static abc_status read_exact(int fd, uint8_t *buf, size_t size, const char *what, const char *path, abc_error *err);
#endif

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

/* Phi-3.5-V HD transform (docs/image-pipeline.md#phi-35-v-hd-transform): the image is resized (Pillow bilinear, portrait images transposed
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

/* ================================================================================================
 * 2. Platform and threads: CPU features, the thread pool
 *
 * The pool keeps persistent workers (created once per context) that sleep on a condition variable
 * between runs and spin briefly before sleeping, so the many short runs of a forward pass do not pay
 * for a wake-up each. Tasks are claimed from an atomic counter; results never depend on which thread
 * ran a task because kernels give every output element to exactly one task with a fixed reduction
 * order (section 7).
 * ================================================================================================ */

/* What the CPU can run, detected once per pool. */
typedef struct {
    bool avx2_fma;   /* AVX2 + FMA (+ F16C), and the OS saves ymm state */
    bool avx512;     /* AVX-512 F/BW/VL, and the OS saves zmm state */
    bool avx512vnni; /* AVX512-VNNI (int8 dot products) */
    bool neon;       /* Advanced SIMD (always on aarch64; with VFPv4 on 32-bit Arm) */
    bool neon_dot;   /* aarch64 asimddp (int8 dot products) */
} cpu_features;

/* Kernel implementations the dispatch in section 7 chooses between. */
enum { KERNEL_SCALAR = 0, KERNEL_AVX2 = 1, KERNEL_AVX512 = 2, KERNEL_NEON = 3, KERNEL_PATH_COUNT = 4 };

#if defined(__x86_64__)
static void cpuid_query(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#define HWCAP_ASIMDDP_BIT (1UL << 20) /* HWCAP_ASIMDDP in <asm/hwcap.h> */
#elif defined(__arm__) && defined(__linux__)
#define HWCAP_ARM_NEON_BIT (1UL << 12)  /* HWCAP_NEON in the 32-bit <asm/hwcap.h> */
#define HWCAP_ARM_VFPV4_BIT (1UL << 16) /* HWCAP_VFPv4: the fused multiply-add */
#endif

static cpu_features cpu_features_detect(void) {
    cpu_features f;
    memset(&f, 0, sizeof f);
#if defined(__x86_64__)
    uint32_t r[4];
    cpuid_query(0, 0, r);
    uint32_t max_leaf = r[0];
    if (max_leaf < 1) return f;
    cpuid_query(1, 0, r);
    bool fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, f16c = (r[2] >> 29) & 1;
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = xgetbv0();
    bool ymm_state = (xcr0 & 0x6) == 0x6;            /* SSE + AVX state */
    bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0; /* opmask + upper zmm + zmm16-31 */
    if (max_leaf < 7) return f;
    cpuid_query(7, 0, r);
    bool avx2 = (r[1] >> 5) & 1;
    bool avx512f = (r[1] >> 16) & 1, avx512bw = (r[1] >> 30) & 1, avx512vl = (r[1] >> 31) & 1;
    bool vnni = (r[2] >> 11) & 1;
    f.avx2_fma = ymm_state && avx2 && fma && f16c;
    f.avx512 = f.avx2_fma && zmm_state && avx512f && avx512bw && avx512vl;
    f.avx512vnni = f.avx512 && vnni;
#elif defined(__aarch64__)
    f.neon = true;
#if defined(__linux__)
    f.neon_dot = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP_BIT) != 0;
#elif defined(ABC_ARM_DOTPROD) || defined(__ARM_FEATURE_DOTPROD)
    f.neon_dot = true; /* no OS to ask: the build says (-march=...+dotprod, or ABC_ARM_DOTPROD) */
#endif
#elif defined(__ARM_NEON) && defined(__linux__)
    /* a NEON build can still meet a core without it (or without VFPv4's fma): ask the kernel */
    const unsigned long need = HWCAP_ARM_NEON_BIT | HWCAP_ARM_VFPV4_BIT;
    f.neon = (getauxval(AT_HWCAP) & need) == need;
#elif defined(__ARM_NEON)
    f.neon = true; /* no OS to ask: the build targets NEON */
#endif
    return f;
}

static bool kernel_path_supported(const cpu_features *f, int path) {
#if defined(ABC_NO_SIMD) /* the scalar-only build: no SIMD kernels are compiled in */
    if (path != KERNEL_SCALAR) return false;
#endif
    switch (path) {
    case KERNEL_SCALAR: return true;
    case KERNEL_AVX2: return f->avx2_fma;
    case KERNEL_AVX512: return f->avx512;
    case KERNEL_NEON: /* compiled in on aarch64, and on 32-bit Arm built for neon-vfpv4 */
#if defined(ABC_NEON_KERNELS)
        return f->neon;
#else
        return false;
#endif
    default: return false;
    }
}

/* The fastest kernel path these features allow. */
static int kernel_path_best(const cpu_features *f) {
    static const int preference[] = {KERNEL_AVX512, KERNEL_AVX2, KERNEL_NEON};
    for (size_t i = 0; i < sizeof preference / sizeof preference[0]; i++)
        if (kernel_path_supported(f, preference[i])) return preference[i];
    return KERNEL_SCALAR;
}

/* The path to run: the best, unless the environment's ABC_KERNEL_PATH names another one these features
 * support (avx512, avx2, neon, scalar) — so `abc bench` can time every path of one machine with one
 * binary. Any other value is ignored. */
static int kernel_path_chosen(const cpu_features *f) {
    static const char *const names[] = {"scalar", "avx2", "avx512", "neon"};
    static const int paths[] = {KERNEL_SCALAR, KERNEL_AVX2, KERNEL_AVX512, KERNEL_NEON};
#if defined(ABC_BARE_METAL) /* no environment */
    const char *want = NULL;
#else
    const char *want = getenv("ABC_KERNEL_PATH");
#endif
    for (size_t i = 0; want && i < sizeof paths / sizeof paths[0]; i++)
        if (strcmp(want, names[i]) == 0 && kernel_path_supported(f, paths[i])) return paths[i];
    return kernel_path_best(f);
}

/* For abc_system_info, logs and benchmarks. */
static const char *kernel_path_name(int path) {
    switch (path) {
    case KERNEL_SCALAR: return "scalar";
    case KERNEL_AVX2: return "avx2";
    case KERNEL_AVX512: return "avx512";
#if defined(__aarch64__)
    case KERNEL_NEON: return "neon";
#else
    case KERNEL_NEON: return "neon32"; /* 32-bit Arm: section 7c's armv7 variant */
#endif
    default: return "?";
    }
}

/* ---- thread pool ---- */

#define POOL_MAX_THREADS 256
/* Per-thread scratch for the kernels (packed weight panels, attention tiles), allocated once. */
#define POOL_SCRATCH_FLOATS ((size_t)320 * 1024)
/* Spin iterations before a waiting thread sleeps on the condition variable. */
#define POOL_SPIN_ITERATIONS 20000

#if !defined(ABC_NO_THREADS)
typedef struct {
    thread_pool *pool;
    int thread;
} pool_worker_arg;
#endif

struct thread_pool {
    int n_threads; /* workers + the caller */
#if !defined(ABC_NO_THREADS)
    pthread_t *workers;
    /* each worker's argument, kept by the pool: a worker freeing its own would call the allocator from
     * another thread whenever it happens to start, possibly during an arena-only abc_embed */
    pool_worker_arg *worker_args;
    int n_started;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* workers wait here for a new generation */
    pthread_cond_t done; /* the caller waits here for the last worker */
    _Atomic unsigned long generation;
    _Atomic int pending; /* workers that have not finished the current run */
    _Atomic int next_task;
    bool stop;
    pool_task_fn fn;
    void *arg;
    int n_tasks;
#endif
    cpu_features features;
    int kernel_path; /* KERNEL_*; tests may force a supported path */
    float **scratch; /* [n_threads] arrays of POOL_SCRATCH_FLOATS, 64-byte aligned */
    size_t scratch_floats;
    /* one operation's operands for all threads (attention's K/V panels, q8's quantized x): kept, so
     * that large inputs do not map and fault in fresh pages every layer */
    workspace shared;
    /* 0, or while a packed batch runs: the longest of its sequences, which picks the f32 matmul path
     * (dot products or GEMM) as for that sequence alone, so that each row gets the arithmetic it gets
     * when its sequence is embedded alone (both paths compute every row on its own) */
    int64_t path_rows;
};

/* ABC_NO_THREADS: no pthreads; a pool is the caller's thread alone and runs every task inline
 * (a context's n_threads above 1 is accepted and ignored). */
#if !defined(ABC_NO_THREADS)
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
    __asm__ volatile("yield" ::: "memory");
#endif
}

static void pool_run_tasks(thread_pool *pool, int thread) {
    for (;;) {
        int task = atomic_fetch_add(&pool->next_task, 1);
        if (task >= pool->n_tasks) break;
        pool->fn(pool->arg, task, thread);
    }
}

static void *pool_worker_main(void *p) {
    thread_pool *pool = ((pool_worker_arg *)p)->pool;
    int thread = ((pool_worker_arg *)p)->thread;
    unsigned long seen = 0;
    for (;;) {
        unsigned long gen = atomic_load(&pool->generation);
        for (int spin = 0; gen == seen && spin < POOL_SPIN_ITERATIONS; spin++) {
            cpu_relax();
            gen = atomic_load(&pool->generation);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((gen = atomic_load(&pool->generation)) == seen && !pool->stop)
                pthread_cond_wait(&pool->wake, &pool->mutex);
            bool stop = pool->stop;
            pthread_mutex_unlock(&pool->mutex);
            if (stop) return NULL;
        }
        seen = gen;
        pool_run_tasks(pool, thread);
        if (atomic_fetch_sub(&pool->pending, 1) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

#endif /* !ABC_NO_THREADS */

static int online_cpus(void) {
#if defined(ABC_NO_THREADS)
    return 1;
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return (int)MIN(n, POOL_MAX_THREADS);
#endif
}

static abc_status thread_pool_new(int n_threads, thread_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = online_cpus();
    if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
    thread_pool *pool = xcalloc(1, sizeof *pool);
    if (!pool) return ABC_ERR_NOMEM;
    pool->n_threads = n_threads;
    pool->features = cpu_features_detect();
    pool->kernel_path = kernel_path_chosen(&pool->features);
    pool->scratch_floats = POOL_SCRATCH_FLOATS;
#if defined(ABC_NO_THREADS)
    pool->n_threads = 1;
    pool->scratch = xcalloc(1, sizeof *pool->scratch);
    if (pool->scratch) pool->scratch[0] = xmalloc_aligned(pool->scratch_floats * sizeof(float));
    if (!pool->scratch || !pool->scratch[0]) {
        thread_pool_free(pool);
        return ABC_ERR_NOMEM;
    }
    *out = pool;
    return ABC_OK;
#else
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool);
        return ABC_ERR_NOMEM;
    }
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->mutex);
        free(pool);
        return ABC_ERR_NOMEM;
    }
    if (pthread_cond_init(&pool->done, NULL) != 0) {
        pthread_cond_destroy(&pool->wake);
        pthread_mutex_destroy(&pool->mutex);
        free(pool);
        return ABC_ERR_NOMEM;
    }
    /* From here on thread_pool_free can undo whatever succeeded. */
    pool->scratch = xcalloc((size_t)n_threads, sizeof *pool->scratch);
    pool->workers = xcalloc((size_t)n_threads, sizeof *pool->workers);
    pool->worker_args = xcalloc((size_t)n_threads, sizeof *pool->worker_args);
    if (!pool->scratch || !pool->workers || !pool->worker_args) goto fail;
    for (int t = 0; t < n_threads; t++) {
        pool->scratch[t] = xmalloc_aligned(pool->scratch_floats * sizeof(float));
        if (!pool->scratch[t]) goto fail;
    }
    for (int t = 1; t < n_threads; t++) {
        pool_worker_arg *arg = &pool->worker_args[t];
        arg->pool = pool;
        arg->thread = t;
        if (pthread_create(&pool->workers[t - 1], NULL, pool_worker_main, arg) != 0) goto fail;
        pool->n_started++;
    }
    *out = pool;
    return ABC_OK;
fail:
    thread_pool_free(pool);
    return ABC_ERR_NOMEM;
#endif
}

static void thread_pool_free(thread_pool *pool) {
    if (!pool) return;
#if !defined(ABC_NO_THREADS)
    pthread_mutex_lock(&pool->mutex);
    pool->stop = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int t = 0; t < pool->n_started; t++) pthread_join(pool->workers[t], NULL);
#endif
    if (pool->scratch)
        for (int t = 0; t < pool->n_threads; t++) free(pool->scratch[t]);
    free(pool->scratch);
    workspace_free(&pool->shared);
#if !defined(ABC_NO_THREADS)
    free(pool->workers);
    free(pool->worker_args);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
#endif
    free(pool);
}

static int thread_pool_size(const thread_pool *pool) { return pool ? pool->n_threads : 1; }

static void thread_pool_run(thread_pool *pool, int n_tasks, pool_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
#if defined(ABC_NO_THREADS)
    (void)pool;
    for (int task = 0; task < n_tasks; task++) fn(arg, task, 0);
#else
    if (!pool || pool->n_started == 0 || n_tasks == 1) {
        for (int task = 0; task < n_tasks; task++) fn(arg, task, 0);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->fn = fn;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    atomic_store(&pool->next_task, 0);
    atomic_store(&pool->pending, pool->n_started);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);

    pool_run_tasks(pool, 0);

    for (int spin = 0; atomic_load(&pool->pending) > 0 && spin < POOL_SPIN_ITERATIONS; spin++) cpu_relax();
    if (atomic_load(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
#endif
}

/* ================================================================================================
 * 3. Weight file: mapping and validating a .abc file (model_convert/FORMAT.md)
 * ================================================================================================ */

/* The format's constants, dtype codes and q8 layout are abc.h's (shared with abc-convert). */

static uint32_t read_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t read_u64le(const uint8_t *p) {
    return (uint64_t)read_u32le(p) | (uint64_t)read_u32le(p + 4) << 32;
}
static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t dtype_size(uint32_t dtype) {
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_F16: case DT_BF16: return 2;
    case DT_U8: return 1;
    default: return 0; /* block formats (q8) have no per-element size */
    }
}

/* DT_Q8: abc.h's layout (ABC_FILE_Q8_*); the kernels read it in place (section 7). */
#define Q8_BLOCK ABC_FILE_Q8_BLOCK
#define Q8_STRIP ABC_FILE_Q8_STRIP
#define Q8_STRIP_BLOCK_BYTES ((size_t)ABC_FILE_Q8_STRIP_BLOCK_BYTES) /* quads, scales */

/* Column j's bytes in the strip block at b (j < 16) or b_hi (j ≥ 16): its quads at [k/4 · Q8_STRIP · 4
 * + k % 4], its scale at [Q8_STRIP · Q8_BLOCK]. */
static const uint8_t *q8_strip_column(const uint8_t *b, const uint8_t *b_hi, int j) {
    return j < Q8_STRIP ? b + (size_t)j * 4 : b_hi + (size_t)(j - Q8_STRIP) * 4;
}

/* Element k of a column (as q8_strip_column gives it): (float)q · its block's scale. */
static float q8_strip_weight_value(const uint8_t *column, int k) {
    float scale;
    memcpy(&scale, column + Q8_STRIP * Q8_BLOCK, sizeof scale);
    return (float)(int8_t)column[(size_t)(k / 4) * Q8_STRIP * 4 + k % 4] * scale;
}

/* DT_Q4: abc.h's layout (ABC_FILE_Q4_*): the same blocks and strips as q8, nibbles and float16 scales. */
#define Q4_NIBBLE_BYTES ((size_t)ABC_FILE_Q4_NIBBLE_BYTES)
#define Q4_STRIP_BLOCK_BYTES ((size_t)ABC_FILE_Q4_STRIP_BLOCK_BYTES)

/* Element k of column j (< Q8_STRIP) of the q4 strip block at b: (float)q · its block's scale. */
static float q4_strip_weight_value(const uint8_t *b, int j, int k) {
    const uint8_t byte = b[(size_t)(k / 8) * Q8_STRIP * 4 + (size_t)j * 4 + k % 4];
    const int q = (k % 8 < 4 ? byte & 15 : byte >> 4) - 8;
    return (float)q * abc_f16_to_f32((uint16_t)(b[Q4_NIBBLE_BYTES + 2 * (size_t)j] | b[Q4_NIBBLE_BYTES + 2 * (size_t)j + 1] << 8));
}

/* Bytes of a q8 or q4 [out][in] tensor; false when `in` is not a multiple of Q8_BLOCK or the size overflows. */
static bool q8_nbytes(uint32_t dtype, uint64_t out, uint64_t in, uint64_t *nbytes) {
    if (in % Q8_BLOCK != 0 || out == 0 || in == 0) return false;
    uint64_t strips = out / Q8_STRIP + (out % Q8_STRIP != 0);
    /* in ≤ INT64_MAX: no overflow */
    uint64_t per_strip = in / Q8_BLOCK * (dtype == DT_Q4 ? Q4_STRIP_BLOCK_BYTES : Q8_STRIP_BLOCK_BYTES);
    if (per_strip > UINT64_MAX / strips) return false;
    *nbytes = per_strip * strips;
    return true;
}

static const char *dtype_name(uint32_t dtype) {
    static const char *names[] = {"f32", "f16", "bf16", "i32", "u8", "q8-rows", "q8", "q4"};
    return dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown";
}

/* Bytes [off, off+len) lie inside a section [sec_off, sec_off+sec_len)? (overflow-safe) */
static bool range_inside(uint64_t off, uint64_t len, uint64_t sec_off, uint64_t sec_len) {
    return off >= sec_off && len <= sec_len && off - sec_off <= sec_len - len;
}

/* Parses the metadata section [off, off+size) into wf->meta. */
static abc_status parse_metadata(weight_file *wf, uint64_t off, uint64_t size, uint32_t count,
                                 abc_error *err) {
    if (count > size / 16) return fail(err, ABC_ERR_FORMAT, "metadata: %u entries cannot fit in %llu bytes", count, (unsigned long long)size);
    wf->meta = xcalloc(count, sizeof *wf->meta);
    if (!wf->meta) return fail(err, ABC_ERR_NOMEM, "out of memory reading metadata");
    uint64_t pos = off, end = off + size;
    for (uint32_t i = 0; i < count; i++) {
        if (end - pos < 16) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: truncated", i);
        const uint8_t *p = wf->base + pos;
        uint32_t key_len = read_u32le(p), type = read_u32le(p + 4);
        uint64_t n = read_u64le(p + 8);
        if (key_len == 0 || key_len > ABC_FILE_MAX_NAME) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: bad key length %u", i, key_len);
        if (type < 1 || type > 3) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: unknown type %u", i, type);
        uint64_t payload_len = type == 3 ? n : n * 8;
        if (type != 3 && n > (UINT64_MAX / 8)) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: count %llu too large", i, (unsigned long long)n);
        uint64_t key_off = pos + 16, payload_off = key_off + pad8(key_len);
        if (!range_inside(key_off, key_len, off, size) || !range_inside(payload_off, payload_len, off, size))
            return fail(err, ABC_ERR_FORMAT, "metadata entry %u: extends past its section", i);
        meta_entry *m = &wf->meta[i];
        m->key = (const char *)wf->base + key_off;
        m->key_len = key_len;
        m->type = type;
        m->count = n;
        m->payload = wf->base + payload_off;
        for (uint32_t j = 0; j < i; j++)
            if (wf->meta[j].key_len == key_len && !memcmp(wf->meta[j].key, m->key, key_len))
                return fail(err, ABC_ERR_FORMAT, "metadata key '%.*s' appears twice", (int)key_len, m->key);
        pos = payload_off + pad8(payload_len);
        if (pos > end) pos = end; /* padding of the last entry may be absent */
    }
    wf->n_meta = count;
    return ABC_OK;
}

/* Parses the tensor directory [off, off+size) into wf->tensors; data must lie in [data_start, size). */
static abc_status parse_tensor_directory(weight_file *wf, uint64_t off, uint64_t size, uint32_t count,
                                         uint64_t data_start, abc_error *err) {
    if (count > size / 64) return fail(err, ABC_ERR_FORMAT, "tensor directory: %u entries cannot fit in %llu bytes", count, (unsigned long long)size);
    wf->tensors = xcalloc(count, sizeof *wf->tensors);
    if (!wf->tensors) return fail(err, ABC_ERR_NOMEM, "out of memory reading the tensor directory");
    uint64_t pos = off;
    for (uint32_t i = 0; i < count; i++) {
        if (!range_inside(pos, 64, off, size)) return fail(err, ABC_ERR_FORMAT, "tensor entry %u: truncated", i);
        const uint8_t *p = wf->base + pos;
        tensor *t = &wf->tensors[i];
        t->name_len = read_u32le(p);
        t->dtype = read_u32le(p + 4);
        uint32_t ndim = read_u32le(p + 8);
        uint64_t data_off = read_u64le(p + 48), nbytes = read_u64le(p + 56);
        if (t->name_len == 0 || t->name_len > ABC_FILE_MAX_NAME || !range_inside(pos + 64, t->name_len, off, size))
            return fail(err, ABC_ERR_FORMAT, "tensor entry %u: bad name length %u", i, t->name_len);
        t->name = (const char *)wf->base + pos + 64;
        int nl = (int)t->name_len;
        if (ndim < 1 || ndim > 4) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': bad rank %u", nl, t->name, ndim);
        if (t->dtype > DT_Q4) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': unknown dtype %u", nl, t->name, t->dtype);
        if (t->dtype == DT_Q8_ROWS_RETIRED)
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': q8 in rows (dtype 5, converters before 2026-12-02) is no longer "
                        "read: convert the checkpoint again", nl, t->name);
        t->ndim = (int)ndim;
        uint64_t elements = 1;
        for (int d = 0; d < 4; d++) {
            uint64_t dim = read_u64le(p + 16 + 8 * d);
            if (dim == 0 || dim > (uint64_t)INT64_MAX || (d >= t->ndim && dim != 1))
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': bad dimension %d (%llu)", nl, t->name, d, (unsigned long long)dim);
            if (elements > UINT64_MAX / dim) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': element count overflows", nl, t->name);
            elements *= dim;
            t->shape[d] = (int64_t)dim;
        }
        size_t esize = dtype_size(t->dtype);
        if (esize && (elements > UINT64_MAX / esize || elements * esize != nbytes))
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': %llu bytes do not match its shape and dtype %s", nl, t->name,
                        (unsigned long long)nbytes, dtype_name(t->dtype));
        if (t->dtype == DT_Q8 || t->dtype == DT_Q4) {
            uint64_t want = 0;
            if (t->ndim != 2 || t->shape[1] % Q8_BLOCK != 0)
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': %s needs 2 dimensions with the second a multiple of %d",
                            nl, t->name, dtype_name(t->dtype), Q8_BLOCK);
            if (!q8_nbytes(t->dtype, (uint64_t)t->shape[0], (uint64_t)t->shape[1], &want) || want != nbytes)
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': %llu bytes do not match its shape and dtype %s", nl, t->name,
                            (unsigned long long)nbytes, dtype_name(t->dtype));
        }
        if (data_off % ABC_FILE_TENSOR_ALIGN) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': data offset not 64-byte aligned", nl, t->name);
        if (!range_inside(data_off, nbytes, data_start, wf->size - data_start))
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': data [%llu, +%llu) lies outside the file's data section", nl, t->name,
                        (unsigned long long)data_off, (unsigned long long)nbytes);
        t->data = wf->base + data_off;
        t->nbytes = (size_t)nbytes;
        for (uint32_t j = 0; j < i; j++)
            if (wf->tensors[j].name_len == t->name_len && !memcmp(wf->tensors[j].name, t->name, t->name_len))
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s' appears twice", nl, t->name);
        pos += 64 + pad8(t->name_len);
    }
    wf->n_tensors = count;
    return ABC_OK;
}

/* Validates the header and both directories of an in-memory image of a .abc file. */
static abc_status weight_file_parse(weight_file *wf, abc_error *err) {
    if (wf->size < ABC_FILE_HEADER_SIZE) return fail(err, ABC_ERR_FORMAT, "file too short (%zu bytes) for a .abc header", wf->size);
    const uint8_t *h = wf->base;
    if (memcmp(h, ABC_FILE_MAGIC, 8) != 0) return fail(err, ABC_ERR_FORMAT, "not a .abc weight file (bad magic)");
    wf->version = read_u32le(h + 8);
    if (wf->version != ABC_FILE_VERSION)
        return fail(err, ABC_ERR_VERSION, "weight file version %u is not supported (this build reads version %u)", wf->version, ABC_FILE_VERSION);
    if (read_u32le(h + 12) != ABC_FILE_HEADER_SIZE) return fail(err, ABC_ERR_FORMAT, "bad header size %u", read_u32le(h + 12));
    uint64_t file_size = read_u64le(h + 16);
    if (file_size != wf->size)
        return fail(err, ABC_ERR_FORMAT, "file is %zu bytes but its header says %llu (truncated or padded?)", wf->size, (unsigned long long)file_size);
    uint64_t meta_off = read_u64le(h + 24), meta_size = read_u64le(h + 32);
    uint64_t dir_off = read_u64le(h + 40), dir_size = read_u64le(h + 48);
    uint32_t n_meta = read_u32le(h + 56), n_tensors = read_u32le(h + 60);
    if (meta_off < ABC_FILE_HEADER_SIZE || meta_off % 8 || !range_inside(meta_off, meta_size, 0, wf->size))
        return fail(err, ABC_ERR_FORMAT, "metadata section [%llu, +%llu) is outside the file", (unsigned long long)meta_off, (unsigned long long)meta_size);
    if (dir_off < meta_off + meta_size || dir_off % 8 || !range_inside(dir_off, dir_size, 0, wf->size))
        return fail(err, ABC_ERR_FORMAT, "tensor directory [%llu, +%llu) is outside the file", (unsigned long long)dir_off, (unsigned long long)dir_size);
    abc_status st = parse_metadata(wf, meta_off, meta_size, n_meta, err);
    if (st != ABC_OK) return st;
    return parse_tensor_directory(wf, dir_off, dir_size, n_tensors, dir_off + dir_size, err);
}

#if !defined(ABC_NO_MMAP) && !defined(ABC_NO_STDIO)
/* Maps `path` (or, with load_into_memory, reads it once into 64-byte-aligned memory) and validates it.
 * A mapped file that is truncated or rewritten while the model is loaded changes the weights under the
 * process, and a read past its new end raises SIGBUS; a copy in memory is immune to that. */
static abc_status weight_file_open_ex(const char *path, bool load_into_memory, weight_file *wf, abc_error *err) {
    memset(wf, 0, sizeof *wf);
    if (!path) return fail(err, ABC_ERR_INVALID_ARG, "model path is NULL");
    int fd;
    uint64_t file_size;
    abc_status st = open_regular_file(path, "model", &fd, &file_size, err);
    if (st != ABC_OK) return st;
    if (file_size < ABC_FILE_HEADER_SIZE) {
        close(fd);
        return fail(err, ABC_ERR_FORMAT, "'%s' is too short (%llu bytes) to be a .abc file", path, (unsigned long long)file_size);
    }
    if (file_size > SIZE_MAX) {
        close(fd);
        return fail(err, ABC_ERR_TOO_LARGE, "'%s' does not fit in the address space", path);
    }
    const size_t size = (size_t)file_size;
    void *base = NULL;
    if (load_into_memory) {
        /* The tensor offsets are 64-byte aligned within the file, as they are within a page-aligned map. */
        base = xmalloc_aligned(size);
        if (!base) st = fail(err, ABC_ERR_NOMEM, "out of memory reading '%s' (%zu bytes) into memory", path, size);
        else st = read_exact(fd, base, size, "model", path, err);
        close(fd);
        if (st != ABC_OK) {
            free(base);
            return st;
        }
        wf->mapped = false;
    } else {
        base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (base == MAP_FAILED) return fail(err, ABC_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        wf->mapped = true;
    }
    wf->base = base;
    wf->size = size;
    st = weight_file_parse(wf, err);
    if (st != ABC_OK) weight_file_close(wf);
    return st;
}
#elif !defined(ABC_NO_STDIO)
/* ABC_NO_MMAP: the file read into aligned memory with the C library alone (load_into_memory is implied). */
static abc_status weight_file_open_ex(const char *path, bool load_into_memory, weight_file *wf, abc_error *err) {
    (void)load_into_memory;
    memset(wf, 0, sizeof *wf);
    if (!path) return fail(err, ABC_ERR_INVALID_ARG, "model path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, ABC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return fail(err, ABC_ERR_IO, "cannot find the size of '%s'", path);
    }
    if ((unsigned long)size < ABC_FILE_HEADER_SIZE) {
        fclose(f);
        return fail(err, ABC_ERR_FORMAT, "'%s' is too short (%ld bytes) to be a .abc file", path, size);
    }
    if ((unsigned long)size > SIZE_MAX - 64) {
        fclose(f);
        return fail(err, ABC_ERR_TOO_LARGE, "'%s' does not fit in the address space", path);
    }
    uint8_t *base = xmalloc_aligned((size_t)size);
    if (!base) {
        fclose(f);
        return fail(err, ABC_ERR_NOMEM, "out of memory reading '%s' (%ld bytes)", path, size);
    }
    size_t got = fread(base, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(base);
        return fail(err, ABC_ERR_IO, "cannot read '%s' (%zu of %ld bytes)", path, got, size);
    }
    wf->base = base;
    wf->size = (size_t)size;
    abc_status st = weight_file_parse(wf, err);
    if (st != ABC_OK) weight_file_close(wf);
    return st;
}
#else
/* ABC_NO_STDIO: no file system; models come from memory (abc_model_load_from_memory). */
static abc_status weight_file_open_ex(const char *path, bool load_into_memory, weight_file *wf, abc_error *err) {
    (void)load_into_memory;
    memset(wf, 0, sizeof *wf);
    return fail(err, ABC_ERR_UNSUPPORTED, "cannot open '%s': built without file access (ABC_NO_STDIO); "
                "use abc_model_load_from_memory", path ? path : "(null)");
}
#endif

/* A file's bytes that the caller keeps alive: used in place, so the tensor alignment must hold in memory too. */
static abc_status weight_file_borrow(const void *data, size_t size, weight_file *wf, abc_error *err) {
    memset(wf, 0, sizeof *wf);
    if (!data) return fail(err, ABC_ERR_INVALID_ARG, "model data is NULL");
    if ((uintptr_t)data % ABC_FILE_TENSOR_ALIGN != 0)
        return fail(err, ABC_ERR_INVALID_ARG, "model data at %p is not %u-byte aligned", data, ABC_FILE_TENSOR_ALIGN);
    if (size < ABC_FILE_HEADER_SIZE)
        return fail(err, ABC_ERR_FORMAT, "%zu bytes are too short to be a .abc file", size);
    wf->base = data;
    wf->size = size;
    wf->borrowed = true;
    abc_status st = weight_file_parse(wf, err);
    if (st != ABC_OK) weight_file_close(wf);
    return st;
}

static void weight_file_close(weight_file *wf) {
    if (!wf) return;
    if (wf->base && !wf->borrowed) {
#if !defined(ABC_NO_MMAP)
        if (wf->mapped) munmap((void *)wf->base, wf->size);
        else
#endif
            free((void *)wf->base);
    }
    free(wf->meta);
    free(wf->tensors);
    memset(wf, 0, sizeof *wf);
}

/* Linear search: a model has about a thousand tensors and binding happens once at load; the name's length
 * is taken once, so most entries are passed over on their length alone. */
static const tensor *wf_tensor(const weight_file *wf, const char *name) {
    const size_t len = strlen(name);
    for (uint32_t i = 0; i < wf->n_tensors; i++)
        if (wf->tensors[i].name_len == len && !memcmp(wf->tensors[i].name, name, len)) return &wf->tensors[i];
    return NULL;
}

static const meta_entry *wf_meta(const weight_file *wf, const char *key) {
    const size_t len = strlen(key);
    for (uint32_t i = 0; i < wf->n_meta; i++)
        if (wf->meta[i].key_len == len && !memcmp(wf->meta[i].key, key, len)) return &wf->meta[i];
    return NULL;
}

static const meta_entry *wf_meta_typed(const weight_file *wf, const char *key, uint32_t type, abc_error *err) {
    static const char *type_names[] = {"", "integer", "float", "string"};
    const meta_entry *m = wf_meta(wf, key);
    if (!m) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing", key);
        return NULL;
    }
    if (m->type != type || (type != 3 && m->count != 1)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is not a single %s", key, type_names[type]);
        return NULL;
    }
    return m;
}

static bool wf_int(const weight_file *wf, const char *key, int64_t *out, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 1, err);
    if (!m) return false;
    *out = (int64_t)read_u64le(m->payload);
    return true;
}

static bool wf_f64(const weight_file *wf, const char *key, double *out, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 2, err);
    if (!m) return false;
    uint64_t bits = read_u64le(m->payload);
    memcpy(out, &bits, sizeof *out);
    return true;
}

static bool wf_str(const weight_file *wf, const char *key, const char **s, size_t *len, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 3, err);
    if (!m) return false;
    *s = m->payload;
    *len = (size_t)m->count;
    return true;
}

/* Fixed-length numeric arrays (mrope_section, mean/std): the stored count must equal `count`. */
static bool wf_int_array(const weight_file *wf, const char *key, int64_t *out, size_t count, abc_error *err) {
    const meta_entry *m = wf_meta(wf, key);
    if (!m || m->type != 1 || m->count != count) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing or not %zu integers", key, count);
        return false;
    }
    for (size_t i = 0; i < count; i++) out[i] = (int64_t)read_u64le((const uint8_t *)m->payload + 8 * i);
    return true;
}

static bool wf_f64_array(const weight_file *wf, const char *key, double *out, size_t count, abc_error *err) {
    const meta_entry *m = wf_meta(wf, key);
    if (!m || m->type != 2 || m->count != count) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing or not %zu floats", key, count);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t bits = read_u64le((const uint8_t *)m->payload + 8 * i);
        memcpy(&out[i], &bits, sizeof out[i]);
    }
    return true;
}
/* >>> BEGIN GENERATED UNICODE TABLES (tools/gen_unicode_tables.py) >>> */
/* ================================================================================================
 * 4a. Unicode 15.0.0 tables for the tokenizer.
 *
 * GENERATED REGION, do not edit by hand: `python3 tools/gen_unicode_tables.py --update abc.c`
 * from the Unicode Character Database 15.0.0 (UnicodeData.txt, PropList.txt,
 * DerivedNormalizationProps.txt; Debian package unicode-data).
 * ================================================================================================ */

#define UC_UNICODE_VERSION "15.0.0"
/* Per code point flags: general category L*, N*, the regex class \s (= White_Space),
 * NFC_Quick_Check not Yes (the character may change under NFC). */
enum { UC_LETTER = 1, UC_NUMBER = 2, UC_SPACE = 4, UC_NFC_CHECK = 8 };
#define UC_FLAGS_SHIFT 7
static const uint8_t uc_flags_stage1[8704] = {
    0, 1, 2, 2, 2, 3, 4, 5, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 2, 2, 2, 38, 39, 40, 41, 42, 43, 44, 45,
    46, 47, 48, 49, 50, 51, 2, 52, 2, 2, 53, 54, 55, 56, 57, 58, 59, 59, 60, 59, 61, 62, 59, 59, 59,
    59, 63, 64, 59, 59, 59, 59, 59, 65, 59, 59, 2, 66, 67, 68, 69, 59, 59, 59, 70, 71, 72, 73, 74,
    75, 59, 59, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 52, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 76, 2, 2, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 89, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 90, 90, 91, 92, 93, 94, 2, 2, 95, 96, 97, 98, 99, 100, 101, 102, 103,
    104, 59, 105, 106, 107, 2, 108, 109, 110, 2, 2, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 59, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 59, 135, 136, 59,
    137, 138, 139, 140, 59, 141, 142, 143, 144, 145, 146, 59, 59, 147, 148, 149, 150, 59, 151, 152,
    153, 2, 2, 2, 2, 2, 2, 2, 154, 155, 2, 156, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 157, 2, 2, 2, 2, 2, 2, 2, 2, 158, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 2,
    2, 2, 2, 159, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 2,
    2, 2, 2, 160, 161, 162, 148, 59, 59, 59, 59, 163, 164, 165, 166, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 167, 2, 2, 2, 2, 2, 2, 2, 2, 2, 168, 169, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 170, 2, 2, 171, 2, 2, 172, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 173, 174, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 175, 176, 59, 177, 178, 59, 179, 180, 181, 2, 2, 182, 183, 184, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 185, 59, 186, 59, 187, 59, 59, 188, 59, 59, 59,
    189, 59, 59, 59, 59, 59, 190, 2, 191, 192, 59, 59, 59, 59, 59, 193, 194, 195, 59, 196, 197, 59,
    59, 59, 59, 198, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    199, 59, 59, 59, 59, 59, 59, 59, 59, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 200, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 201, 2, 202, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 203, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 204, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 90, 90, 90, 90, 205, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 206, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 207, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
    59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59, 59,
};
static const uint8_t uc_flags_stage2[26624] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 1, 0, 0, 0, 2, 1, 0, 2, 2, 2, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    8, 8, 8, 8, 8, 0, 8, 8, 8, 8, 8, 8, 8, 0, 0, 8, 0, 8, 0, 8, 8, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0,
    0, 0, 0, 8, 8, 8, 8, 8, 8, 0, 0, 0, 0, 8, 8, 0, 8, 8, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0,
    8, 8, 8, 8, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 9, 0, 1, 1, 0, 0, 1, 1, 1, 1, 8, 1,
    0, 0, 0, 0, 0, 0, 1, 8, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 0, 0, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 8, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 9, 9, 0, 9,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 9, 0, 1, 9, 0, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 1, 0, 9, 0,
    0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 9, 9, 0, 1,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1,
    0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 1, 1, 0, 0, 1, 0, 0,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 0,
    1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0,
    0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 1, 1, 0,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 8, 2, 2, 2, 2, 2, 2, 2, 1,
    1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 8, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8,
    0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
    1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 9, 1, 1, 1, 1, 0, 1, 1, 1, 1, 9, 1, 1, 1, 1, 9, 1, 1, 1, 1, 9, 1, 1, 1, 1, 9, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 1, 1, 1, 0, 0, 0, 0, 0, 0, 8, 0, 8, 8, 0, 8, 0, 0, 0, 0, 0, 0, 0,
    0, 8, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0,
    0, 0, 8, 0, 0, 0, 0, 8, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0,
    0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 1, 9, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 9, 1, 0, 9, 0,
    0, 0, 1, 1, 1, 0, 1, 1, 1, 9, 1, 9, 1, 0, 0, 0, 1, 1, 1, 9, 0, 0, 1, 1, 1, 1, 1, 9, 0, 0, 0, 0,
    1, 1, 1, 9, 1, 1, 1, 1, 1, 1, 1, 9, 1, 0, 8, 8, 0, 0, 1, 1, 1, 0, 1, 1, 1, 9, 1, 9, 1, 8, 0, 0,
    12, 12, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 1, 0, 9, 0, 1, 0, 9, 9, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 4, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 1, 1, 0, 0,
    0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 8, 8, 0, 0, 1, 1,
    1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0,
    0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 9, 1, 9, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    1, 9, 1, 9, 1, 1, 9, 9, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 9, 0,
    9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 9, 9, 9, 9, 9, 0, 9,
    0, 9, 9, 0, 9, 9, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
    2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 1, 0, 0,
    0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 8,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 1,
    1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 8, 0,
    0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 2, 2, 2, 2,
    2, 2, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8,
    8, 8, 8, 8, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8,
    8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1,
    1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1,
    1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1,
    0, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 2, 2, 2, 0, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0,
    0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0,
    1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
};
/* 35328 bytes */

/* Canonical combining class. */
#define UC_CCC_SHIFT 7
static const uint8_t uc_ccc_stage1[8704] = {
    0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 12, 12, 13, 14, 12, 15, 16,
    17, 18, 19, 20, 21, 22, 0, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0, 24, 25, 0, 26, 27, 0, 28, 29, 30,
    31, 32, 33, 0, 34, 0, 0, 0, 0, 0, 35, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 36, 37, 38, 0, 0, 0, 0, 39, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 42, 0, 0, 43, 44,
    45, 46, 0, 47, 0, 48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 49, 0, 0, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 51, 0, 52, 53, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 54, 55, 0, 0, 0, 0, 56, 0, 0, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 0, 67, 68,
    0, 69, 70, 71, 72, 0, 61, 0, 73, 74, 75, 76, 0, 0, 70, 0, 77, 78, 0, 0, 79, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 80, 81, 0, 0, 0, 0, 0, 0, 0, 0, 82, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 84, 85,
    86, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 87, 88, 81,
    0, 0, 89, 0, 0, 0, 90, 0, 0, 0, 0, 0, 0, 0, 91, 92, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
static const uint8_t uc_ccc_stage2[11904] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 232, 220, 220, 220, 220, 232, 216, 220, 220, 220, 220, 220, 202, 202, 220, 220, 220,
    220, 202, 202, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 1, 1, 1, 1, 1, 220, 220,
    220, 220, 230, 230, 230, 230, 230, 230, 230, 230, 240, 230, 220, 220, 220, 230, 230, 230, 220,
    220, 0, 230, 230, 230, 220, 220, 220, 220, 230, 232, 220, 220, 230, 233, 234, 234, 233, 234,
    234, 233, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 230,
    230, 230, 230, 220, 230, 230, 230, 222, 220, 230, 230, 230, 230, 230, 230, 220, 220, 220, 220,
    220, 220, 230, 230, 220, 230, 230, 222, 228, 230, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 19,
    20, 21, 22, 0, 23, 0, 24, 25, 0, 230, 220, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230,
    230, 230, 230, 230, 30, 31, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 28, 29, 30,
    31, 32, 33, 34, 230, 230, 220, 220, 230, 230, 230, 230, 230, 220, 230, 230, 220, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 35, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 0, 0, 230,
    230, 230, 230, 220, 230, 0, 0, 230, 230, 0, 220, 230, 230, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 220, 230, 230, 220,
    230, 230, 220, 220, 220, 230, 220, 220, 230, 220, 230, 230, 230, 220, 230, 220, 230, 220, 230,
    220, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 220, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 0, 230,
    230, 230, 230, 230, 230, 230, 230, 230, 0, 230, 230, 230, 0, 230, 230, 230, 230, 230, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 220, 220, 220, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    230, 230, 230, 230, 230, 220, 220, 220, 220, 220, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 230, 230, 230, 0, 220, 230, 230, 220, 230, 230, 220, 230, 230, 230, 220, 220, 220, 27,
    28, 29, 230, 230, 230, 220, 230, 230, 220, 220, 230, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 9, 0, 0, 0, 230, 220, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 84, 91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 103, 103, 9, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 107, 107, 107, 107, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 118, 118, 9, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 122, 122, 122, 122, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 0, 220, 0,
    216, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 129, 130, 0, 132, 0,
    0, 0, 0, 0, 130, 130, 130, 130, 0, 0, 130, 0, 230, 230, 9, 0, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 228,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 222, 230, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 230, 0, 0, 220, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 220, 220, 220, 220, 220,
    220, 230, 230, 220, 0, 220, 220, 230, 230, 220, 220, 230, 230, 230, 230, 230, 220, 230, 230,
    230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    230, 220, 230, 230, 230, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 0, 1, 220, 220, 220, 220, 220, 230, 230, 220,
    220, 220, 220, 230, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 220, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0,
    230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 220, 230, 230, 230, 230, 230, 230, 230, 220, 230, 230, 234,
    214, 220, 202, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 232, 228, 228, 220, 218, 230, 233, 220, 230, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 230, 230, 1, 1, 230, 230, 230, 230, 1, 1, 1, 230, 230, 0, 0, 0, 0, 230, 0, 0, 0, 1,
    1, 230, 220, 230, 1, 1, 220, 220, 220, 220, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 218, 228, 232, 222, 224, 224, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 220,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 230, 0, 230, 230, 220, 0, 0, 230, 230, 0, 0, 0, 0, 0, 230, 230, 0, 230, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230,
    230, 230, 220, 220, 220, 220, 220, 220, 220, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230,
    230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 0, 230, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 230, 1, 220, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 230, 230, 230,
    220, 230, 220, 220, 220, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 220, 230,
    220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230,
    230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 7, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 230, 0, 0, 0, 230, 230, 230, 230, 230, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 7,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230,
    230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 6, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 216, 216, 1, 1, 1, 0, 0, 0, 226, 216, 216,
    216, 216, 216, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 220, 220, 220, 220, 220, 220, 0, 0, 230, 230,
    230, 230, 230, 220, 220, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 230, 230, 230, 230, 230, 230, 230, 0, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230, 230,
    230, 230, 230, 230, 230, 230, 0, 0, 230, 230, 230, 230, 230, 230, 230, 0, 230, 230, 0, 230, 230,
    230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 232, 232, 220, 230, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 220, 220, 220, 220, 220, 220, 220, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 230, 230, 230, 230, 230, 230, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* 20608 bytes */

/* Full canonical decompositions: code point uc_decomp_cp[i] decomposes to
 * uc_decomp_seq[uc_decomp_start[i] .. uc_decomp_start[i+1]). Hangul syllables are algorithmic. */
#define UC_DECOMP_COUNT 2061
static const uint32_t uc_decomp_cp[2061] = {
    0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD1,
    0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5,
    0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xEF, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF9,
    0xFA, 0xFB, 0xFC, 0xFD, 0xFF, 0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108,
    0x109, 0x10A, 0x10B, 0x10C, 0x10D, 0x10E, 0x10F, 0x112, 0x113, 0x114, 0x115, 0x116, 0x117,
    0x118, 0x119, 0x11A, 0x11B, 0x11C, 0x11D, 0x11E, 0x11F, 0x120, 0x121, 0x122, 0x123, 0x124,
    0x125, 0x128, 0x129, 0x12A, 0x12B, 0x12C, 0x12D, 0x12E, 0x12F, 0x130, 0x134, 0x135, 0x136,
    0x137, 0x139, 0x13A, 0x13B, 0x13C, 0x13D, 0x13E, 0x143, 0x144, 0x145, 0x146, 0x147, 0x148,
    0x14C, 0x14D, 0x14E, 0x14F, 0x150, 0x151, 0x154, 0x155, 0x156, 0x157, 0x158, 0x159, 0x15A,
    0x15B, 0x15C, 0x15D, 0x15E, 0x15F, 0x160, 0x161, 0x162, 0x163, 0x164, 0x165, 0x168, 0x169,
    0x16A, 0x16B, 0x16C, 0x16D, 0x16E, 0x16F, 0x170, 0x171, 0x172, 0x173, 0x174, 0x175, 0x176,
    0x177, 0x178, 0x179, 0x17A, 0x17B, 0x17C, 0x17D, 0x17E, 0x1A0, 0x1A1, 0x1AF, 0x1B0, 0x1CD,
    0x1CE, 0x1CF, 0x1D0, 0x1D1, 0x1D2, 0x1D3, 0x1D4, 0x1D5, 0x1D6, 0x1D7, 0x1D8, 0x1D9, 0x1DA,
    0x1DB, 0x1DC, 0x1DE, 0x1DF, 0x1E0, 0x1E1, 0x1E2, 0x1E3, 0x1E6, 0x1E7, 0x1E8, 0x1E9, 0x1EA,
    0x1EB, 0x1EC, 0x1ED, 0x1EE, 0x1EF, 0x1F0, 0x1F4, 0x1F5, 0x1F8, 0x1F9, 0x1FA, 0x1FB, 0x1FC,
    0x1FD, 0x1FE, 0x1FF, 0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209,
    0x20A, 0x20B, 0x20C, 0x20D, 0x20E, 0x20F, 0x210, 0x211, 0x212, 0x213, 0x214, 0x215, 0x216,
    0x217, 0x218, 0x219, 0x21A, 0x21B, 0x21E, 0x21F, 0x226, 0x227, 0x228, 0x229, 0x22A, 0x22B,
    0x22C, 0x22D, 0x22E, 0x22F, 0x230, 0x231, 0x232, 0x233, 0x340, 0x341, 0x343, 0x344, 0x374,
    0x37E, 0x385, 0x386, 0x387, 0x388, 0x389, 0x38A, 0x38C, 0x38E, 0x38F, 0x390, 0x3AA, 0x3AB,
    0x3AC, 0x3AD, 0x3AE, 0x3AF, 0x3B0, 0x3CA, 0x3CB, 0x3CC, 0x3CD, 0x3CE, 0x3D3, 0x3D4, 0x400,
    0x401, 0x403, 0x407, 0x40C, 0x40D, 0x40E, 0x419, 0x439, 0x450, 0x451, 0x453, 0x457, 0x45C,
    0x45D, 0x45E, 0x476, 0x477, 0x4C1, 0x4C2, 0x4D0, 0x4D1, 0x4D2, 0x4D3, 0x4D6, 0x4D7, 0x4DA,
    0x4DB, 0x4DC, 0x4DD, 0x4DE, 0x4DF, 0x4E2, 0x4E3, 0x4E4, 0x4E5, 0x4E6, 0x4E7, 0x4EA, 0x4EB,
    0x4EC, 0x4ED, 0x4EE, 0x4EF, 0x4F0, 0x4F1, 0x4F2, 0x4F3, 0x4F4, 0x4F5, 0x4F8, 0x4F9, 0x622,
    0x623, 0x624, 0x625, 0x626, 0x6C0, 0x6C2, 0x6D3, 0x929, 0x931, 0x934, 0x958, 0x959, 0x95A,
    0x95B, 0x95C, 0x95D, 0x95E, 0x95F, 0x9CB, 0x9CC, 0x9DC, 0x9DD, 0x9DF, 0xA33, 0xA36, 0xA59,
    0xA5A, 0xA5B, 0xA5E, 0xB48, 0xB4B, 0xB4C, 0xB5C, 0xB5D, 0xB94, 0xBCA, 0xBCB, 0xBCC, 0xC48,
    0xCC0, 0xCC7, 0xCC8, 0xCCA, 0xCCB, 0xD4A, 0xD4B, 0xD4C, 0xDDA, 0xDDC, 0xDDD, 0xDDE, 0xF43,
    0xF4D, 0xF52, 0xF57, 0xF5C, 0xF69, 0xF73, 0xF75, 0xF76, 0xF78, 0xF81, 0xF93, 0xF9D, 0xFA2,
    0xFA7, 0xFAC, 0xFB9, 0x1026, 0x1B06, 0x1B08, 0x1B0A, 0x1B0C, 0x1B0E, 0x1B12, 0x1B3B, 0x1B3D,
    0x1B40, 0x1B41, 0x1B43, 0x1E00, 0x1E01, 0x1E02, 0x1E03, 0x1E04, 0x1E05, 0x1E06, 0x1E07, 0x1E08,
    0x1E09, 0x1E0A, 0x1E0B, 0x1E0C, 0x1E0D, 0x1E0E, 0x1E0F, 0x1E10, 0x1E11, 0x1E12, 0x1E13, 0x1E14,
    0x1E15, 0x1E16, 0x1E17, 0x1E18, 0x1E19, 0x1E1A, 0x1E1B, 0x1E1C, 0x1E1D, 0x1E1E, 0x1E1F, 0x1E20,
    0x1E21, 0x1E22, 0x1E23, 0x1E24, 0x1E25, 0x1E26, 0x1E27, 0x1E28, 0x1E29, 0x1E2A, 0x1E2B, 0x1E2C,
    0x1E2D, 0x1E2E, 0x1E2F, 0x1E30, 0x1E31, 0x1E32, 0x1E33, 0x1E34, 0x1E35, 0x1E36, 0x1E37, 0x1E38,
    0x1E39, 0x1E3A, 0x1E3B, 0x1E3C, 0x1E3D, 0x1E3E, 0x1E3F, 0x1E40, 0x1E41, 0x1E42, 0x1E43, 0x1E44,
    0x1E45, 0x1E46, 0x1E47, 0x1E48, 0x1E49, 0x1E4A, 0x1E4B, 0x1E4C, 0x1E4D, 0x1E4E, 0x1E4F, 0x1E50,
    0x1E51, 0x1E52, 0x1E53, 0x1E54, 0x1E55, 0x1E56, 0x1E57, 0x1E58, 0x1E59, 0x1E5A, 0x1E5B, 0x1E5C,
    0x1E5D, 0x1E5E, 0x1E5F, 0x1E60, 0x1E61, 0x1E62, 0x1E63, 0x1E64, 0x1E65, 0x1E66, 0x1E67, 0x1E68,
    0x1E69, 0x1E6A, 0x1E6B, 0x1E6C, 0x1E6D, 0x1E6E, 0x1E6F, 0x1E70, 0x1E71, 0x1E72, 0x1E73, 0x1E74,
    0x1E75, 0x1E76, 0x1E77, 0x1E78, 0x1E79, 0x1E7A, 0x1E7B, 0x1E7C, 0x1E7D, 0x1E7E, 0x1E7F, 0x1E80,
    0x1E81, 0x1E82, 0x1E83, 0x1E84, 0x1E85, 0x1E86, 0x1E87, 0x1E88, 0x1E89, 0x1E8A, 0x1E8B, 0x1E8C,
    0x1E8D, 0x1E8E, 0x1E8F, 0x1E90, 0x1E91, 0x1E92, 0x1E93, 0x1E94, 0x1E95, 0x1E96, 0x1E97, 0x1E98,
    0x1E99, 0x1E9B, 0x1EA0, 0x1EA1, 0x1EA2, 0x1EA3, 0x1EA4, 0x1EA5, 0x1EA6, 0x1EA7, 0x1EA8, 0x1EA9,
    0x1EAA, 0x1EAB, 0x1EAC, 0x1EAD, 0x1EAE, 0x1EAF, 0x1EB0, 0x1EB1, 0x1EB2, 0x1EB3, 0x1EB4, 0x1EB5,
    0x1EB6, 0x1EB7, 0x1EB8, 0x1EB9, 0x1EBA, 0x1EBB, 0x1EBC, 0x1EBD, 0x1EBE, 0x1EBF, 0x1EC0, 0x1EC1,
    0x1EC2, 0x1EC3, 0x1EC4, 0x1EC5, 0x1EC6, 0x1EC7, 0x1EC8, 0x1EC9, 0x1ECA, 0x1ECB, 0x1ECC, 0x1ECD,
    0x1ECE, 0x1ECF, 0x1ED0, 0x1ED1, 0x1ED2, 0x1ED3, 0x1ED4, 0x1ED5, 0x1ED6, 0x1ED7, 0x1ED8, 0x1ED9,
    0x1EDA, 0x1EDB, 0x1EDC, 0x1EDD, 0x1EDE, 0x1EDF, 0x1EE0, 0x1EE1, 0x1EE2, 0x1EE3, 0x1EE4, 0x1EE5,
    0x1EE6, 0x1EE7, 0x1EE8, 0x1EE9, 0x1EEA, 0x1EEB, 0x1EEC, 0x1EED, 0x1EEE, 0x1EEF, 0x1EF0, 0x1EF1,
    0x1EF2, 0x1EF3, 0x1EF4, 0x1EF5, 0x1EF6, 0x1EF7, 0x1EF8, 0x1EF9, 0x1F00, 0x1F01, 0x1F02, 0x1F03,
    0x1F04, 0x1F05, 0x1F06, 0x1F07, 0x1F08, 0x1F09, 0x1F0A, 0x1F0B, 0x1F0C, 0x1F0D, 0x1F0E, 0x1F0F,
    0x1F10, 0x1F11, 0x1F12, 0x1F13, 0x1F14, 0x1F15, 0x1F18, 0x1F19, 0x1F1A, 0x1F1B, 0x1F1C, 0x1F1D,
    0x1F20, 0x1F21, 0x1F22, 0x1F23, 0x1F24, 0x1F25, 0x1F26, 0x1F27, 0x1F28, 0x1F29, 0x1F2A, 0x1F2B,
    0x1F2C, 0x1F2D, 0x1F2E, 0x1F2F, 0x1F30, 0x1F31, 0x1F32, 0x1F33, 0x1F34, 0x1F35, 0x1F36, 0x1F37,
    0x1F38, 0x1F39, 0x1F3A, 0x1F3B, 0x1F3C, 0x1F3D, 0x1F3E, 0x1F3F, 0x1F40, 0x1F41, 0x1F42, 0x1F43,
    0x1F44, 0x1F45, 0x1F48, 0x1F49, 0x1F4A, 0x1F4B, 0x1F4C, 0x1F4D, 0x1F50, 0x1F51, 0x1F52, 0x1F53,
    0x1F54, 0x1F55, 0x1F56, 0x1F57, 0x1F59, 0x1F5B, 0x1F5D, 0x1F5F, 0x1F60, 0x1F61, 0x1F62, 0x1F63,
    0x1F64, 0x1F65, 0x1F66, 0x1F67, 0x1F68, 0x1F69, 0x1F6A, 0x1F6B, 0x1F6C, 0x1F6D, 0x1F6E, 0x1F6F,
    0x1F70, 0x1F71, 0x1F72, 0x1F73, 0x1F74, 0x1F75, 0x1F76, 0x1F77, 0x1F78, 0x1F79, 0x1F7A, 0x1F7B,
    0x1F7C, 0x1F7D, 0x1F80, 0x1F81, 0x1F82, 0x1F83, 0x1F84, 0x1F85, 0x1F86, 0x1F87, 0x1F88, 0x1F89,
    0x1F8A, 0x1F8B, 0x1F8C, 0x1F8D, 0x1F8E, 0x1F8F, 0x1F90, 0x1F91, 0x1F92, 0x1F93, 0x1F94, 0x1F95,
    0x1F96, 0x1F97, 0x1F98, 0x1F99, 0x1F9A, 0x1F9B, 0x1F9C, 0x1F9D, 0x1F9E, 0x1F9F, 0x1FA0, 0x1FA1,
    0x1FA2, 0x1FA3, 0x1FA4, 0x1FA5, 0x1FA6, 0x1FA7, 0x1FA8, 0x1FA9, 0x1FAA, 0x1FAB, 0x1FAC, 0x1FAD,
    0x1FAE, 0x1FAF, 0x1FB0, 0x1FB1, 0x1FB2, 0x1FB3, 0x1FB4, 0x1FB6, 0x1FB7, 0x1FB8, 0x1FB9, 0x1FBA,
    0x1FBB, 0x1FBC, 0x1FBE, 0x1FC1, 0x1FC2, 0x1FC3, 0x1FC4, 0x1FC6, 0x1FC7, 0x1FC8, 0x1FC9, 0x1FCA,
    0x1FCB, 0x1FCC, 0x1FCD, 0x1FCE, 0x1FCF, 0x1FD0, 0x1FD1, 0x1FD2, 0x1FD3, 0x1FD6, 0x1FD7, 0x1FD8,
    0x1FD9, 0x1FDA, 0x1FDB, 0x1FDD, 0x1FDE, 0x1FDF, 0x1FE0, 0x1FE1, 0x1FE2, 0x1FE3, 0x1FE4, 0x1FE5,
    0x1FE6, 0x1FE7, 0x1FE8, 0x1FE9, 0x1FEA, 0x1FEB, 0x1FEC, 0x1FED, 0x1FEE, 0x1FEF, 0x1FF2, 0x1FF3,
    0x1FF4, 0x1FF6, 0x1FF7, 0x1FF8, 0x1FF9, 0x1FFA, 0x1FFB, 0x1FFC, 0x1FFD, 0x2000, 0x2001, 0x2126,
    0x212A, 0x212B, 0x219A, 0x219B, 0x21AE, 0x21CD, 0x21CE, 0x21CF, 0x2204, 0x2209, 0x220C, 0x2224,
    0x2226, 0x2241, 0x2244, 0x2247, 0x2249, 0x2260, 0x2262, 0x226D, 0x226E, 0x226F, 0x2270, 0x2271,
    0x2274, 0x2275, 0x2278, 0x2279, 0x2280, 0x2281, 0x2284, 0x2285, 0x2288, 0x2289, 0x22AC, 0x22AD,
    0x22AE, 0x22AF, 0x22E0, 0x22E1, 0x22E2, 0x22E3, 0x22EA, 0x22EB, 0x22EC, 0x22ED, 0x2329, 0x232A,
    0x2ADC, 0x304C, 0x304E, 0x3050, 0x3052, 0x3054, 0x3056, 0x3058, 0x305A, 0x305C, 0x305E, 0x3060,
    0x3062, 0x3065, 0x3067, 0x3069, 0x3070, 0x3071, 0x3073, 0x3074, 0x3076, 0x3077, 0x3079, 0x307A,
    0x307C, 0x307D, 0x3094, 0x309E, 0x30AC, 0x30AE, 0x30B0, 0x30B2, 0x30B4, 0x30B6, 0x30B8, 0x30BA,
    0x30BC, 0x30BE, 0x30C0, 0x30C2, 0x30C5, 0x30C7, 0x30C9, 0x30D0, 0x30D1, 0x30D3, 0x30D4, 0x30D6,
    0x30D7, 0x30D9, 0x30DA, 0x30DC, 0x30DD, 0x30F4, 0x30F7, 0x30F8, 0x30F9, 0x30FA, 0x30FE, 0xF900,
    0xF901, 0xF902, 0xF903, 0xF904, 0xF905, 0xF906, 0xF907, 0xF908, 0xF909, 0xF90A, 0xF90B, 0xF90C,
    0xF90D, 0xF90E, 0xF90F, 0xF910, 0xF911, 0xF912, 0xF913, 0xF914, 0xF915, 0xF916, 0xF917, 0xF918,
    0xF919, 0xF91A, 0xF91B, 0xF91C, 0xF91D, 0xF91E, 0xF91F, 0xF920, 0xF921, 0xF922, 0xF923, 0xF924,
    0xF925, 0xF926, 0xF927, 0xF928, 0xF929, 0xF92A, 0xF92B, 0xF92C, 0xF92D, 0xF92E, 0xF92F, 0xF930,
    0xF931, 0xF932, 0xF933, 0xF934, 0xF935, 0xF936, 0xF937, 0xF938, 0xF939, 0xF93A, 0xF93B, 0xF93C,
    0xF93D, 0xF93E, 0xF93F, 0xF940, 0xF941, 0xF942, 0xF943, 0xF944, 0xF945, 0xF946, 0xF947, 0xF948,
    0xF949, 0xF94A, 0xF94B, 0xF94C, 0xF94D, 0xF94E, 0xF94F, 0xF950, 0xF951, 0xF952, 0xF953, 0xF954,
    0xF955, 0xF956, 0xF957, 0xF958, 0xF959, 0xF95A, 0xF95B, 0xF95C, 0xF95D, 0xF95E, 0xF95F, 0xF960,
    0xF961, 0xF962, 0xF963, 0xF964, 0xF965, 0xF966, 0xF967, 0xF968, 0xF969, 0xF96A, 0xF96B, 0xF96C,
    0xF96D, 0xF96E, 0xF96F, 0xF970, 0xF971, 0xF972, 0xF973, 0xF974, 0xF975, 0xF976, 0xF977, 0xF978,
    0xF979, 0xF97A, 0xF97B, 0xF97C, 0xF97D, 0xF97E, 0xF97F, 0xF980, 0xF981, 0xF982, 0xF983, 0xF984,
    0xF985, 0xF986, 0xF987, 0xF988, 0xF989, 0xF98A, 0xF98B, 0xF98C, 0xF98D, 0xF98E, 0xF98F, 0xF990,
    0xF991, 0xF992, 0xF993, 0xF994, 0xF995, 0xF996, 0xF997, 0xF998, 0xF999, 0xF99A, 0xF99B, 0xF99C,
    0xF99D, 0xF99E, 0xF99F, 0xF9A0, 0xF9A1, 0xF9A2, 0xF9A3, 0xF9A4, 0xF9A5, 0xF9A6, 0xF9A7, 0xF9A8,
    0xF9A9, 0xF9AA, 0xF9AB, 0xF9AC, 0xF9AD, 0xF9AE, 0xF9AF, 0xF9B0, 0xF9B1, 0xF9B2, 0xF9B3, 0xF9B4,
    0xF9B5, 0xF9B6, 0xF9B7, 0xF9B8, 0xF9B9, 0xF9BA, 0xF9BB, 0xF9BC, 0xF9BD, 0xF9BE, 0xF9BF, 0xF9C0,
    0xF9C1, 0xF9C2, 0xF9C3, 0xF9C4, 0xF9C5, 0xF9C6, 0xF9C7, 0xF9C8, 0xF9C9, 0xF9CA, 0xF9CB, 0xF9CC,
    0xF9CD, 0xF9CE, 0xF9CF, 0xF9D0, 0xF9D1, 0xF9D2, 0xF9D3, 0xF9D4, 0xF9D5, 0xF9D6, 0xF9D7, 0xF9D8,
    0xF9D9, 0xF9DA, 0xF9DB, 0xF9DC, 0xF9DD, 0xF9DE, 0xF9DF, 0xF9E0, 0xF9E1, 0xF9E2, 0xF9E3, 0xF9E4,
    0xF9E5, 0xF9E6, 0xF9E7, 0xF9E8, 0xF9E9, 0xF9EA, 0xF9EB, 0xF9EC, 0xF9ED, 0xF9EE, 0xF9EF, 0xF9F0,
    0xF9F1, 0xF9F2, 0xF9F3, 0xF9F4, 0xF9F5, 0xF9F6, 0xF9F7, 0xF9F8, 0xF9F9, 0xF9FA, 0xF9FB, 0xF9FC,
    0xF9FD, 0xF9FE, 0xF9FF, 0xFA00, 0xFA01, 0xFA02, 0xFA03, 0xFA04, 0xFA05, 0xFA06, 0xFA07, 0xFA08,
    0xFA09, 0xFA0A, 0xFA0B, 0xFA0C, 0xFA0D, 0xFA10, 0xFA12, 0xFA15, 0xFA16, 0xFA17, 0xFA18, 0xFA19,
    0xFA1A, 0xFA1B, 0xFA1C, 0xFA1D, 0xFA1E, 0xFA20, 0xFA22, 0xFA25, 0xFA26, 0xFA2A, 0xFA2B, 0xFA2C,
    0xFA2D, 0xFA2E, 0xFA2F, 0xFA30, 0xFA31, 0xFA32, 0xFA33, 0xFA34, 0xFA35, 0xFA36, 0xFA37, 0xFA38,
    0xFA39, 0xFA3A, 0xFA3B, 0xFA3C, 0xFA3D, 0xFA3E, 0xFA3F, 0xFA40, 0xFA41, 0xFA42, 0xFA43, 0xFA44,
    0xFA45, 0xFA46, 0xFA47, 0xFA48, 0xFA49, 0xFA4A, 0xFA4B, 0xFA4C, 0xFA4D, 0xFA4E, 0xFA4F, 0xFA50,
    0xFA51, 0xFA52, 0xFA53, 0xFA54, 0xFA55, 0xFA56, 0xFA57, 0xFA58, 0xFA59, 0xFA5A, 0xFA5B, 0xFA5C,
    0xFA5D, 0xFA5E, 0xFA5F, 0xFA60, 0xFA61, 0xFA62, 0xFA63, 0xFA64, 0xFA65, 0xFA66, 0xFA67, 0xFA68,
    0xFA69, 0xFA6A, 0xFA6B, 0xFA6C, 0xFA6D, 0xFA70, 0xFA71, 0xFA72, 0xFA73, 0xFA74, 0xFA75, 0xFA76,
    0xFA77, 0xFA78, 0xFA79, 0xFA7A, 0xFA7B, 0xFA7C, 0xFA7D, 0xFA7E, 0xFA7F, 0xFA80, 0xFA81, 0xFA82,
    0xFA83, 0xFA84, 0xFA85, 0xFA86, 0xFA87, 0xFA88, 0xFA89, 0xFA8A, 0xFA8B, 0xFA8C, 0xFA8D, 0xFA8E,
    0xFA8F, 0xFA90, 0xFA91, 0xFA92, 0xFA93, 0xFA94, 0xFA95, 0xFA96, 0xFA97, 0xFA98, 0xFA99, 0xFA9A,
    0xFA9B, 0xFA9C, 0xFA9D, 0xFA9E, 0xFA9F, 0xFAA0, 0xFAA1, 0xFAA2, 0xFAA3, 0xFAA4, 0xFAA5, 0xFAA6,
    0xFAA7, 0xFAA8, 0xFAA9, 0xFAAA, 0xFAAB, 0xFAAC, 0xFAAD, 0xFAAE, 0xFAAF, 0xFAB0, 0xFAB1, 0xFAB2,
    0xFAB3, 0xFAB4, 0xFAB5, 0xFAB6, 0xFAB7, 0xFAB8, 0xFAB9, 0xFABA, 0xFABB, 0xFABC, 0xFABD, 0xFABE,
    0xFABF, 0xFAC0, 0xFAC1, 0xFAC2, 0xFAC3, 0xFAC4, 0xFAC5, 0xFAC6, 0xFAC7, 0xFAC8, 0xFAC9, 0xFACA,
    0xFACB, 0xFACC, 0xFACD, 0xFACE, 0xFACF, 0xFAD0, 0xFAD1, 0xFAD2, 0xFAD3, 0xFAD4, 0xFAD5, 0xFAD6,
    0xFAD7, 0xFAD8, 0xFAD9, 0xFB1D, 0xFB1F, 0xFB2A, 0xFB2B, 0xFB2C, 0xFB2D, 0xFB2E, 0xFB2F, 0xFB30,
    0xFB31, 0xFB32, 0xFB33, 0xFB34, 0xFB35, 0xFB36, 0xFB38, 0xFB39, 0xFB3A, 0xFB3B, 0xFB3C, 0xFB3E,
    0xFB40, 0xFB41, 0xFB43, 0xFB44, 0xFB46, 0xFB47, 0xFB48, 0xFB49, 0xFB4A, 0xFB4B, 0xFB4C, 0xFB4D,
    0xFB4E, 0x1109A, 0x1109C, 0x110AB, 0x1112E, 0x1112F, 0x1134B, 0x1134C, 0x114BB, 0x114BC,
    0x114BE, 0x115BA, 0x115BB, 0x11938, 0x1D15E, 0x1D15F, 0x1D160, 0x1D161, 0x1D162, 0x1D163,
    0x1D164, 0x1D1BB, 0x1D1BC, 0x1D1BD, 0x1D1BE, 0x1D1BF, 0x1D1C0, 0x2F800, 0x2F801, 0x2F802,
    0x2F803, 0x2F804, 0x2F805, 0x2F806, 0x2F807, 0x2F808, 0x2F809, 0x2F80A, 0x2F80B, 0x2F80C,
    0x2F80D, 0x2F80E, 0x2F80F, 0x2F810, 0x2F811, 0x2F812, 0x2F813, 0x2F814, 0x2F815, 0x2F816,
    0x2F817, 0x2F818, 0x2F819, 0x2F81A, 0x2F81B, 0x2F81C, 0x2F81D, 0x2F81E, 0x2F81F, 0x2F820,
    0x2F821, 0x2F822, 0x2F823, 0x2F824, 0x2F825, 0x2F826, 0x2F827, 0x2F828, 0x2F829, 0x2F82A,
    0x2F82B, 0x2F82C, 0x2F82D, 0x2F82E, 0x2F82F, 0x2F830, 0x2F831, 0x2F832, 0x2F833, 0x2F834,
    0x2F835, 0x2F836, 0x2F837, 0x2F838, 0x2F839, 0x2F83A, 0x2F83B, 0x2F83C, 0x2F83D, 0x2F83E,
    0x2F83F, 0x2F840, 0x2F841, 0x2F842, 0x2F843, 0x2F844, 0x2F845, 0x2F846, 0x2F847, 0x2F848,
    0x2F849, 0x2F84A, 0x2F84B, 0x2F84C, 0x2F84D, 0x2F84E, 0x2F84F, 0x2F850, 0x2F851, 0x2F852,
    0x2F853, 0x2F854, 0x2F855, 0x2F856, 0x2F857, 0x2F858, 0x2F859, 0x2F85A, 0x2F85B, 0x2F85C,
    0x2F85D, 0x2F85E, 0x2F85F, 0x2F860, 0x2F861, 0x2F862, 0x2F863, 0x2F864, 0x2F865, 0x2F866,
    0x2F867, 0x2F868, 0x2F869, 0x2F86A, 0x2F86B, 0x2F86C, 0x2F86D, 0x2F86E, 0x2F86F, 0x2F870,
    0x2F871, 0x2F872, 0x2F873, 0x2F874, 0x2F875, 0x2F876, 0x2F877, 0x2F878, 0x2F879, 0x2F87A,
    0x2F87B, 0x2F87C, 0x2F87D, 0x2F87E, 0x2F87F, 0x2F880, 0x2F881, 0x2F882, 0x2F883, 0x2F884,
    0x2F885, 0x2F886, 0x2F887, 0x2F888, 0x2F889, 0x2F88A, 0x2F88B, 0x2F88C, 0x2F88D, 0x2F88E,
    0x2F88F, 0x2F890, 0x2F891, 0x2F892, 0x2F893, 0x2F894, 0x2F895, 0x2F896, 0x2F897, 0x2F898,
    0x2F899, 0x2F89A, 0x2F89B, 0x2F89C, 0x2F89D, 0x2F89E, 0x2F89F, 0x2F8A0, 0x2F8A1, 0x2F8A2,
    0x2F8A3, 0x2F8A4, 0x2F8A5, 0x2F8A6, 0x2F8A7, 0x2F8A8, 0x2F8A9, 0x2F8AA, 0x2F8AB, 0x2F8AC,
    0x2F8AD, 0x2F8AE, 0x2F8AF, 0x2F8B0, 0x2F8B1, 0x2F8B2, 0x2F8B3, 0x2F8B4, 0x2F8B5, 0x2F8B6,
    0x2F8B7, 0x2F8B8, 0x2F8B9, 0x2F8BA, 0x2F8BB, 0x2F8BC, 0x2F8BD, 0x2F8BE, 0x2F8BF, 0x2F8C0,
    0x2F8C1, 0x2F8C2, 0x2F8C3, 0x2F8C4, 0x2F8C5, 0x2F8C6, 0x2F8C7, 0x2F8C8, 0x2F8C9, 0x2F8CA,
    0x2F8CB, 0x2F8CC, 0x2F8CD, 0x2F8CE, 0x2F8CF, 0x2F8D0, 0x2F8D1, 0x2F8D2, 0x2F8D3, 0x2F8D4,
    0x2F8D5, 0x2F8D6, 0x2F8D7, 0x2F8D8, 0x2F8D9, 0x2F8DA, 0x2F8DB, 0x2F8DC, 0x2F8DD, 0x2F8DE,
    0x2F8DF, 0x2F8E0, 0x2F8E1, 0x2F8E2, 0x2F8E3, 0x2F8E4, 0x2F8E5, 0x2F8E6, 0x2F8E7, 0x2F8E8,
    0x2F8E9, 0x2F8EA, 0x2F8EB, 0x2F8EC, 0x2F8ED, 0x2F8EE, 0x2F8EF, 0x2F8F0, 0x2F8F1, 0x2F8F2,
    0x2F8F3, 0x2F8F4, 0x2F8F5, 0x2F8F6, 0x2F8F7, 0x2F8F8, 0x2F8F9, 0x2F8FA, 0x2F8FB, 0x2F8FC,
    0x2F8FD, 0x2F8FE, 0x2F8FF, 0x2F900, 0x2F901, 0x2F902, 0x2F903, 0x2F904, 0x2F905, 0x2F906,
    0x2F907, 0x2F908, 0x2F909, 0x2F90A, 0x2F90B, 0x2F90C, 0x2F90D, 0x2F90E, 0x2F90F, 0x2F910,
    0x2F911, 0x2F912, 0x2F913, 0x2F914, 0x2F915, 0x2F916, 0x2F917, 0x2F918, 0x2F919, 0x2F91A,
    0x2F91B, 0x2F91C, 0x2F91D, 0x2F91E, 0x2F91F, 0x2F920, 0x2F921, 0x2F922, 0x2F923, 0x2F924,
    0x2F925, 0x2F926, 0x2F927, 0x2F928, 0x2F929, 0x2F92A, 0x2F92B, 0x2F92C, 0x2F92D, 0x2F92E,
    0x2F92F, 0x2F930, 0x2F931, 0x2F932, 0x2F933, 0x2F934, 0x2F935, 0x2F936, 0x2F937, 0x2F938,
    0x2F939, 0x2F93A, 0x2F93B, 0x2F93C, 0x2F93D, 0x2F93E, 0x2F93F, 0x2F940, 0x2F941, 0x2F942,
    0x2F943, 0x2F944, 0x2F945, 0x2F946, 0x2F947, 0x2F948, 0x2F949, 0x2F94A, 0x2F94B, 0x2F94C,
    0x2F94D, 0x2F94E, 0x2F94F, 0x2F950, 0x2F951, 0x2F952, 0x2F953, 0x2F954, 0x2F955, 0x2F956,
    0x2F957, 0x2F958, 0x2F959, 0x2F95A, 0x2F95B, 0x2F95C, 0x2F95D, 0x2F95E, 0x2F95F, 0x2F960,
    0x2F961, 0x2F962, 0x2F963, 0x2F964, 0x2F965, 0x2F966, 0x2F967, 0x2F968, 0x2F969, 0x2F96A,
    0x2F96B, 0x2F96C, 0x2F96D, 0x2F96E, 0x2F96F, 0x2F970, 0x2F971, 0x2F972, 0x2F973, 0x2F974,
    0x2F975, 0x2F976, 0x2F977, 0x2F978, 0x2F979, 0x2F97A, 0x2F97B, 0x2F97C, 0x2F97D, 0x2F97E,
    0x2F97F, 0x2F980, 0x2F981, 0x2F982, 0x2F983, 0x2F984, 0x2F985, 0x2F986, 0x2F987, 0x2F988,
    0x2F989, 0x2F98A, 0x2F98B, 0x2F98C, 0x2F98D, 0x2F98E, 0x2F98F, 0x2F990, 0x2F991, 0x2F992,
    0x2F993, 0x2F994, 0x2F995, 0x2F996, 0x2F997, 0x2F998, 0x2F999, 0x2F99A, 0x2F99B, 0x2F99C,
    0x2F99D, 0x2F99E, 0x2F99F, 0x2F9A0, 0x2F9A1, 0x2F9A2, 0x2F9A3, 0x2F9A4, 0x2F9A5, 0x2F9A6,
    0x2F9A7, 0x2F9A8, 0x2F9A9, 0x2F9AA, 0x2F9AB, 0x2F9AC, 0x2F9AD, 0x2F9AE, 0x2F9AF, 0x2F9B0,
    0x2F9B1, 0x2F9B2, 0x2F9B3, 0x2F9B4, 0x2F9B5, 0x2F9B6, 0x2F9B7, 0x2F9B8, 0x2F9B9, 0x2F9BA,
    0x2F9BB, 0x2F9BC, 0x2F9BD, 0x2F9BE, 0x2F9BF, 0x2F9C0, 0x2F9C1, 0x2F9C2, 0x2F9C3, 0x2F9C4,
    0x2F9C5, 0x2F9C6, 0x2F9C7, 0x2F9C8, 0x2F9C9, 0x2F9CA, 0x2F9CB, 0x2F9CC, 0x2F9CD, 0x2F9CE,
    0x2F9CF, 0x2F9D0, 0x2F9D1, 0x2F9D2, 0x2F9D3, 0x2F9D4, 0x2F9D5, 0x2F9D6, 0x2F9D7, 0x2F9D8,
    0x2F9D9, 0x2F9DA, 0x2F9DB, 0x2F9DC, 0x2F9DD, 0x2F9DE, 0x2F9DF, 0x2F9E0, 0x2F9E1, 0x2F9E2,
    0x2F9E3, 0x2F9E4, 0x2F9E5, 0x2F9E6, 0x2F9E7, 0x2F9E8, 0x2F9E9, 0x2F9EA, 0x2F9EB, 0x2F9EC,
    0x2F9ED, 0x2F9EE, 0x2F9EF, 0x2F9F0, 0x2F9F1, 0x2F9F2, 0x2F9F3, 0x2F9F4, 0x2F9F5, 0x2F9F6,
    0x2F9F7, 0x2F9F8, 0x2F9F9, 0x2F9FA, 0x2F9FB, 0x2F9FC, 0x2F9FD, 0x2F9FE, 0x2F9FF, 0x2FA00,
    0x2FA01, 0x2FA02, 0x2FA03, 0x2FA04, 0x2FA05, 0x2FA06, 0x2FA07, 0x2FA08, 0x2FA09, 0x2FA0A,
    0x2FA0B, 0x2FA0C, 0x2FA0D, 0x2FA0E, 0x2FA0F, 0x2FA10, 0x2FA11, 0x2FA12, 0x2FA13, 0x2FA14,
    0x2FA15, 0x2FA16, 0x2FA17, 0x2FA18, 0x2FA19, 0x2FA1A, 0x2FA1B, 0x2FA1C, 0x2FA1D,
};
static const uint16_t uc_decomp_start[2062] = {
    0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48,
    50, 52, 54, 56, 58, 60, 62, 64, 66, 68, 70, 72, 74, 76, 78, 80, 82, 84, 86, 88, 90, 92, 94, 96,
    98, 100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 122, 124, 126, 128, 130, 132, 134,
    136, 138, 140, 142, 144, 146, 148, 150, 152, 154, 156, 158, 160, 162, 164, 166, 168, 170, 172,
    174, 176, 178, 180, 182, 184, 186, 188, 190, 192, 194, 196, 198, 200, 202, 204, 206, 208, 210,
    212, 214, 216, 218, 220, 222, 224, 226, 228, 230, 232, 234, 236, 238, 240, 242, 244, 246, 248,
    250, 252, 254, 256, 258, 260, 262, 264, 266, 268, 270, 272, 274, 276, 278, 280, 282, 284, 286,
    288, 290, 292, 294, 296, 298, 300, 302, 304, 306, 308, 310, 312, 314, 316, 318, 320, 322, 324,
    326, 328, 330, 332, 334, 336, 338, 340, 342, 344, 346, 349, 352, 355, 358, 361, 364, 367, 370,
    373, 376, 379, 382, 384, 386, 388, 390, 392, 394, 396, 398, 401, 404, 406, 408, 410, 412, 414,
    416, 418, 421, 424, 426, 428, 430, 432, 434, 436, 438, 440, 442, 444, 446, 448, 450, 452, 454,
    456, 458, 460, 462, 464, 466, 468, 470, 472, 474, 476, 478, 480, 482, 484, 486, 488, 490, 492,
    494, 496, 498, 500, 503, 506, 509, 512, 514, 516, 519, 522, 524, 526, 527, 528, 529, 531, 532,
    533, 535, 537, 538, 540, 542, 544, 546, 548, 550, 553, 555, 557, 559, 561, 563, 565, 568, 570,
    572, 574, 576, 578, 580, 582, 584, 586, 588, 590, 592, 594, 596, 598, 600, 602, 604, 606, 608,
    610, 612, 614, 616, 618, 620, 622, 624, 626, 628, 630, 632, 634, 636, 638, 640, 642, 644, 646,
    648, 650, 652, 654, 656, 658, 660, 662, 664, 666, 668, 670, 672, 674, 676, 678, 680, 682, 684,
    686, 688, 690, 692, 694, 696, 698, 700, 702, 704, 706, 708, 710, 712, 714, 716, 718, 720, 722,
    724, 726, 728, 730, 732, 734, 736, 738, 740, 742, 744, 746, 748, 750, 752, 754, 756, 758, 760,
    762, 764, 766, 768, 770, 772, 774, 777, 779, 781, 783, 785, 787, 790, 792, 794, 796, 798, 800,
    802, 804, 806, 808, 810, 812, 814, 816, 818, 820, 822, 824, 826, 828, 830, 832, 834, 836, 838,
    840, 842, 844, 846, 848, 850, 852, 854, 856, 858, 860, 862, 864, 866, 869, 872, 874, 876, 878,
    880, 882, 884, 886, 888, 890, 892, 895, 898, 901, 904, 906, 908, 910, 912, 915, 918, 920, 922,
    924, 926, 928, 930, 932, 934, 936, 938, 940, 942, 944, 946, 948, 950, 953, 956, 958, 960, 962,
    964, 966, 968, 970, 972, 975, 978, 980, 982, 984, 986, 988, 990, 992, 994, 996, 998, 1000, 1002,
    1004, 1006, 1008, 1010, 1012, 1014, 1017, 1020, 1023, 1026, 1029, 1032, 1035, 1038, 1040, 1042,
    1044, 1046, 1048, 1050, 1052, 1054, 1057, 1060, 1062, 1064, 1066, 1068, 1070, 1072, 1075, 1078,
    1081, 1084, 1087, 1090, 1092, 1094, 1096, 1098, 1100, 1102, 1104, 1106, 1108, 1110, 1112, 1114,
    1116, 1118, 1121, 1124, 1127, 1130, 1132, 1134, 1136, 1138, 1140, 1142, 1144, 1146, 1148, 1150,
    1152, 1154, 1156, 1158, 1160, 1162, 1164, 1166, 1168, 1170, 1172, 1174, 1176, 1178, 1180, 1182,
    1184, 1186, 1188, 1190, 1192, 1194, 1196, 1198, 1200, 1203, 1206, 1209, 1212, 1215, 1218, 1221,
    1224, 1227, 1230, 1233, 1236, 1239, 1242, 1245, 1248, 1251, 1254, 1257, 1260, 1262, 1264, 1266,
    1268, 1270, 1272, 1275, 1278, 1281, 1284, 1287, 1290, 1293, 1296, 1299, 1302, 1304, 1306, 1308,
    1310, 1312, 1314, 1316, 1318, 1321, 1324, 1327, 1330, 1333, 1336, 1339, 1342, 1345, 1348, 1351,
    1354, 1357, 1360, 1363, 1366, 1369, 1372, 1375, 1378, 1380, 1382, 1384, 1386, 1389, 1392, 1395,
    1398, 1401, 1404, 1407, 1410, 1413, 1416, 1418, 1420, 1422, 1424, 1426, 1428, 1430, 1432, 1434,
    1436, 1439, 1442, 1445, 1448, 1451, 1454, 1456, 1458, 1461, 1464, 1467, 1470, 1473, 1476, 1478,
    1480, 1483, 1486, 1489, 1492, 1494, 1496, 1499, 1502, 1505, 1508, 1510, 1512, 1515, 1518, 1521,
    1524, 1527, 1530, 1532, 1534, 1537, 1540, 1543, 1546, 1549, 1552, 1554, 1556, 1559, 1562, 1565,
    1568, 1571, 1574, 1576, 1578, 1581, 1584, 1587, 1590, 1593, 1596, 1598, 1600, 1603, 1606, 1609,
    1612, 1614, 1616, 1619, 1622, 1625, 1628, 1630, 1632, 1635, 1638, 1641, 1644, 1647, 1650, 1652,
    1655, 1658, 1661, 1663, 1665, 1668, 1671, 1674, 1677, 1680, 1683, 1685, 1687, 1690, 1693, 1696,
    1699, 1702, 1705, 1707, 1709, 1711, 1713, 1715, 1717, 1719, 1721, 1723, 1725, 1727, 1729, 1731,
    1733, 1736, 1739, 1743, 1747, 1751, 1755, 1759, 1763, 1766, 1769, 1773, 1777, 1781, 1785, 1789,
    1793, 1796, 1799, 1803, 1807, 1811, 1815, 1819, 1823, 1826, 1829, 1833, 1837, 1841, 1845, 1849,
    1853, 1856, 1859, 1863, 1867, 1871, 1875, 1879, 1883, 1886, 1889, 1893, 1897, 1901, 1905, 1909,
    1913, 1915, 1917, 1920, 1922, 1925, 1927, 1930, 1932, 1934, 1936, 1938, 1940, 1941, 1943, 1946,
    1948, 1951, 1953, 1956, 1958, 1960, 1962, 1964, 1966, 1968, 1970, 1972, 1974, 1976, 1979, 1982,
    1984, 1987, 1989, 1991, 1993, 1995, 1997, 1999, 2001, 2003, 2005, 2008, 2011, 2013, 2015, 2017,
    2020, 2022, 2024, 2026, 2028, 2030, 2032, 2034, 2035, 2038, 2040, 2043, 2045, 2048, 2050, 2052,
    2054, 2056, 2058, 2059, 2060, 2061, 2062, 2063, 2065, 2067, 2069, 2071, 2073, 2075, 2077, 2079,
    2081, 2083, 2085, 2087, 2089, 2091, 2093, 2095, 2097, 2099, 2101, 2103, 2105, 2107, 2109, 2111,
    2113, 2115, 2117, 2119, 2121, 2123, 2125, 2127, 2129, 2131, 2133, 2135, 2137, 2139, 2141, 2143,
    2145, 2147, 2149, 2151, 2153, 2154, 2155, 2157, 2159, 2161, 2163, 2165, 2167, 2169, 2171, 2173,
    2175, 2177, 2179, 2181, 2183, 2185, 2187, 2189, 2191, 2193, 2195, 2197, 2199, 2201, 2203, 2205,
    2207, 2209, 2211, 2213, 2215, 2217, 2219, 2221, 2223, 2225, 2227, 2229, 2231, 2233, 2235, 2237,
    2239, 2241, 2243, 2245, 2247, 2249, 2251, 2253, 2255, 2257, 2259, 2261, 2263, 2265, 2267, 2269,
    2271, 2273, 2274, 2275, 2276, 2277, 2278, 2279, 2280, 2281, 2282, 2283, 2284, 2285, 2286, 2287,
    2288, 2289, 2290, 2291, 2292, 2293, 2294, 2295, 2296, 2297, 2298, 2299, 2300, 2301, 2302, 2303,
    2304, 2305, 2306, 2307, 2308, 2309, 2310, 2311, 2312, 2313, 2314, 2315, 2316, 2317, 2318, 2319,
    2320, 2321, 2322, 2323, 2324, 2325, 2326, 2327, 2328, 2329, 2330, 2331, 2332, 2333, 2334, 2335,
    2336, 2337, 2338, 2339, 2340, 2341, 2342, 2343, 2344, 2345, 2346, 2347, 2348, 2349, 2350, 2351,
    2352, 2353, 2354, 2355, 2356, 2357, 2358, 2359, 2360, 2361, 2362, 2363, 2364, 2365, 2366, 2367,
    2368, 2369, 2370, 2371, 2372, 2373, 2374, 2375, 2376, 2377, 2378, 2379, 2380, 2381, 2382, 2383,
    2384, 2385, 2386, 2387, 2388, 2389, 2390, 2391, 2392, 2393, 2394, 2395, 2396, 2397, 2398, 2399,
    2400, 2401, 2402, 2403, 2404, 2405, 2406, 2407, 2408, 2409, 2410, 2411, 2412, 2413, 2414, 2415,
    2416, 2417, 2418, 2419, 2420, 2421, 2422, 2423, 2424, 2425, 2426, 2427, 2428, 2429, 2430, 2431,
    2432, 2433, 2434, 2435, 2436, 2437, 2438, 2439, 2440, 2441, 2442, 2443, 2444, 2445, 2446, 2447,
    2448, 2449, 2450, 2451, 2452, 2453, 2454, 2455, 2456, 2457, 2458, 2459, 2460, 2461, 2462, 2463,
    2464, 2465, 2466, 2467, 2468, 2469, 2470, 2471, 2472, 2473, 2474, 2475, 2476, 2477, 2478, 2479,
    2480, 2481, 2482, 2483, 2484, 2485, 2486, 2487, 2488, 2489, 2490, 2491, 2492, 2493, 2494, 2495,
    2496, 2497, 2498, 2499, 2500, 2501, 2502, 2503, 2504, 2505, 2506, 2507, 2508, 2509, 2510, 2511,
    2512, 2513, 2514, 2515, 2516, 2517, 2518, 2519, 2520, 2521, 2522, 2523, 2524, 2525, 2526, 2527,
    2528, 2529, 2530, 2531, 2532, 2533, 2534, 2535, 2536, 2537, 2538, 2539, 2540, 2541, 2542, 2543,
    2544, 2545, 2546, 2547, 2548, 2549, 2550, 2551, 2552, 2553, 2554, 2555, 2556, 2557, 2558, 2559,
    2560, 2561, 2562, 2563, 2564, 2565, 2566, 2567, 2568, 2569, 2570, 2571, 2572, 2573, 2574, 2575,
    2576, 2577, 2578, 2579, 2580, 2581, 2582, 2583, 2584, 2585, 2586, 2587, 2588, 2589, 2590, 2591,
    2592, 2593, 2594, 2595, 2596, 2597, 2598, 2599, 2600, 2601, 2602, 2603, 2604, 2605, 2606, 2607,
    2608, 2609, 2610, 2611, 2612, 2613, 2614, 2615, 2616, 2617, 2618, 2619, 2620, 2621, 2622, 2623,
    2624, 2625, 2626, 2627, 2628, 2629, 2630, 2631, 2632, 2633, 2634, 2635, 2636, 2637, 2638, 2639,
    2640, 2641, 2642, 2643, 2644, 2645, 2646, 2647, 2648, 2649, 2650, 2651, 2652, 2653, 2654, 2655,
    2656, 2657, 2658, 2659, 2660, 2661, 2662, 2663, 2664, 2665, 2666, 2667, 2668, 2669, 2670, 2671,
    2672, 2673, 2674, 2675, 2676, 2677, 2678, 2679, 2680, 2681, 2682, 2683, 2684, 2685, 2686, 2687,
    2688, 2689, 2690, 2691, 2692, 2693, 2694, 2695, 2696, 2697, 2698, 2699, 2700, 2701, 2702, 2703,
    2704, 2705, 2706, 2707, 2708, 2709, 2710, 2711, 2712, 2713, 2714, 2715, 2716, 2717, 2718, 2719,
    2720, 2721, 2722, 2723, 2724, 2725, 2726, 2727, 2728, 2729, 2730, 2731, 2732, 2733, 2735, 2737,
    2739, 2741, 2744, 2747, 2749, 2751, 2753, 2755, 2757, 2759, 2761, 2763, 2765, 2767, 2769, 2771,
    2773, 2775, 2777, 2779, 2781, 2783, 2785, 2787, 2789, 2791, 2793, 2795, 2797, 2799, 2801, 2803,
    2805, 2807, 2809, 2811, 2813, 2815, 2817, 2819, 2821, 2823, 2825, 2827, 2829, 2831, 2833, 2836,
    2839, 2842, 2845, 2848, 2850, 2852, 2855, 2858, 2861, 2864, 2865, 2866, 2867, 2868, 2869, 2870,
    2871, 2872, 2873, 2874, 2875, 2876, 2877, 2878, 2879, 2880, 2881, 2882, 2883, 2884, 2885, 2886,
    2887, 2888, 2889, 2890, 2891, 2892, 2893, 2894, 2895, 2896, 2897, 2898, 2899, 2900, 2901, 2902,
    2903, 2904, 2905, 2906, 2907, 2908, 2909, 2910, 2911, 2912, 2913, 2914, 2915, 2916, 2917, 2918,
    2919, 2920, 2921, 2922, 2923, 2924, 2925, 2926, 2927, 2928, 2929, 2930, 2931, 2932, 2933, 2934,
    2935, 2936, 2937, 2938, 2939, 2940, 2941, 2942, 2943, 2944, 2945, 2946, 2947, 2948, 2949, 2950,
    2951, 2952, 2953, 2954, 2955, 2956, 2957, 2958, 2959, 2960, 2961, 2962, 2963, 2964, 2965, 2966,
    2967, 2968, 2969, 2970, 2971, 2972, 2973, 2974, 2975, 2976, 2977, 2978, 2979, 2980, 2981, 2982,
    2983, 2984, 2985, 2986, 2987, 2988, 2989, 2990, 2991, 2992, 2993, 2994, 2995, 2996, 2997, 2998,
    2999, 3000, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010, 3011, 3012, 3013, 3014,
    3015, 3016, 3017, 3018, 3019, 3020, 3021, 3022, 3023, 3024, 3025, 3026, 3027, 3028, 3029, 3030,
    3031, 3032, 3033, 3034, 3035, 3036, 3037, 3038, 3039, 3040, 3041, 3042, 3043, 3044, 3045, 3046,
    3047, 3048, 3049, 3050, 3051, 3052, 3053, 3054, 3055, 3056, 3057, 3058, 3059, 3060, 3061, 3062,
    3063, 3064, 3065, 3066, 3067, 3068, 3069, 3070, 3071, 3072, 3073, 3074, 3075, 3076, 3077, 3078,
    3079, 3080, 3081, 3082, 3083, 3084, 3085, 3086, 3087, 3088, 3089, 3090, 3091, 3092, 3093, 3094,
    3095, 3096, 3097, 3098, 3099, 3100, 3101, 3102, 3103, 3104, 3105, 3106, 3107, 3108, 3109, 3110,
    3111, 3112, 3113, 3114, 3115, 3116, 3117, 3118, 3119, 3120, 3121, 3122, 3123, 3124, 3125, 3126,
    3127, 3128, 3129, 3130, 3131, 3132, 3133, 3134, 3135, 3136, 3137, 3138, 3139, 3140, 3141, 3142,
    3143, 3144, 3145, 3146, 3147, 3148, 3149, 3150, 3151, 3152, 3153, 3154, 3155, 3156, 3157, 3158,
    3159, 3160, 3161, 3162, 3163, 3164, 3165, 3166, 3167, 3168, 3169, 3170, 3171, 3172, 3173, 3174,
    3175, 3176, 3177, 3178, 3179, 3180, 3181, 3182, 3183, 3184, 3185, 3186, 3187, 3188, 3189, 3190,
    3191, 3192, 3193, 3194, 3195, 3196, 3197, 3198, 3199, 3200, 3201, 3202, 3203, 3204, 3205, 3206,
    3207, 3208, 3209, 3210, 3211, 3212, 3213, 3214, 3215, 3216, 3217, 3218, 3219, 3220, 3221, 3222,
    3223, 3224, 3225, 3226, 3227, 3228, 3229, 3230, 3231, 3232, 3233, 3234, 3235, 3236, 3237, 3238,
    3239, 3240, 3241, 3242, 3243, 3244, 3245, 3246, 3247, 3248, 3249, 3250, 3251, 3252, 3253, 3254,
    3255, 3256, 3257, 3258, 3259, 3260, 3261, 3262, 3263, 3264, 3265, 3266, 3267, 3268, 3269, 3270,
    3271, 3272, 3273, 3274, 3275, 3276, 3277, 3278, 3279, 3280, 3281, 3282, 3283, 3284, 3285, 3286,
    3287, 3288, 3289, 3290, 3291, 3292, 3293, 3294, 3295, 3296, 3297, 3298, 3299, 3300, 3301, 3302,
    3303, 3304, 3305, 3306, 3307, 3308, 3309, 3310, 3311, 3312, 3313, 3314, 3315, 3316, 3317, 3318,
    3319, 3320, 3321, 3322, 3323, 3324, 3325, 3326, 3327, 3328, 3329, 3330, 3331, 3332, 3333, 3334,
    3335, 3336, 3337, 3338, 3339, 3340, 3341, 3342, 3343, 3344, 3345, 3346, 3347, 3348, 3349, 3350,
    3351, 3352, 3353, 3354, 3355, 3356, 3357, 3358, 3359, 3360, 3361, 3362, 3363, 3364, 3365, 3366,
    3367, 3368, 3369, 3370, 3371, 3372, 3373, 3374, 3375, 3376, 3377, 3378, 3379, 3380, 3381, 3382,
    3383, 3384, 3385, 3386, 3387, 3388, 3389, 3390, 3391, 3392, 3393, 3394, 3395, 3396, 3397, 3398,
    3399, 3400, 3401, 3402, 3403, 3404, 3405, 3406,
};
static const uint32_t uc_decomp_seq[3406] = {
    0x41, 0x300, 0x41, 0x301, 0x41, 0x302, 0x41, 0x303, 0x41, 0x308, 0x41, 0x30A, 0x43, 0x327, 0x45,
    0x300, 0x45, 0x301, 0x45, 0x302, 0x45, 0x308, 0x49, 0x300, 0x49, 0x301, 0x49, 0x302, 0x49,
    0x308, 0x4E, 0x303, 0x4F, 0x300, 0x4F, 0x301, 0x4F, 0x302, 0x4F, 0x303, 0x4F, 0x308, 0x55,
    0x300, 0x55, 0x301, 0x55, 0x302, 0x55, 0x308, 0x59, 0x301, 0x61, 0x300, 0x61, 0x301, 0x61,
    0x302, 0x61, 0x303, 0x61, 0x308, 0x61, 0x30A, 0x63, 0x327, 0x65, 0x300, 0x65, 0x301, 0x65,
    0x302, 0x65, 0x308, 0x69, 0x300, 0x69, 0x301, 0x69, 0x302, 0x69, 0x308, 0x6E, 0x303, 0x6F,
    0x300, 0x6F, 0x301, 0x6F, 0x302, 0x6F, 0x303, 0x6F, 0x308, 0x75, 0x300, 0x75, 0x301, 0x75,
    0x302, 0x75, 0x308, 0x79, 0x301, 0x79, 0x308, 0x41, 0x304, 0x61, 0x304, 0x41, 0x306, 0x61,
    0x306, 0x41, 0x328, 0x61, 0x328, 0x43, 0x301, 0x63, 0x301, 0x43, 0x302, 0x63, 0x302, 0x43,
    0x307, 0x63, 0x307, 0x43, 0x30C, 0x63, 0x30C, 0x44, 0x30C, 0x64, 0x30C, 0x45, 0x304, 0x65,
    0x304, 0x45, 0x306, 0x65, 0x306, 0x45, 0x307, 0x65, 0x307, 0x45, 0x328, 0x65, 0x328, 0x45,
    0x30C, 0x65, 0x30C, 0x47, 0x302, 0x67, 0x302, 0x47, 0x306, 0x67, 0x306, 0x47, 0x307, 0x67,
    0x307, 0x47, 0x327, 0x67, 0x327, 0x48, 0x302, 0x68, 0x302, 0x49, 0x303, 0x69, 0x303, 0x49,
    0x304, 0x69, 0x304, 0x49, 0x306, 0x69, 0x306, 0x49, 0x328, 0x69, 0x328, 0x49, 0x307, 0x4A,
    0x302, 0x6A, 0x302, 0x4B, 0x327, 0x6B, 0x327, 0x4C, 0x301, 0x6C, 0x301, 0x4C, 0x327, 0x6C,
    0x327, 0x4C, 0x30C, 0x6C, 0x30C, 0x4E, 0x301, 0x6E, 0x301, 0x4E, 0x327, 0x6E, 0x327, 0x4E,
    0x30C, 0x6E, 0x30C, 0x4F, 0x304, 0x6F, 0x304, 0x4F, 0x306, 0x6F, 0x306, 0x4F, 0x30B, 0x6F,
    0x30B, 0x52, 0x301, 0x72, 0x301, 0x52, 0x327, 0x72, 0x327, 0x52, 0x30C, 0x72, 0x30C, 0x53,
    0x301, 0x73, 0x301, 0x53, 0x302, 0x73, 0x302, 0x53, 0x327, 0x73, 0x327, 0x53, 0x30C, 0x73,
    0x30C, 0x54, 0x327, 0x74, 0x327, 0x54, 0x30C, 0x74, 0x30C, 0x55, 0x303, 0x75, 0x303, 0x55,
    0x304, 0x75, 0x304, 0x55, 0x306, 0x75, 0x306, 0x55, 0x30A, 0x75, 0x30A, 0x55, 0x30B, 0x75,
    0x30B, 0x55, 0x328, 0x75, 0x328, 0x57, 0x302, 0x77, 0x302, 0x59, 0x302, 0x79, 0x302, 0x59,
    0x308, 0x5A, 0x301, 0x7A, 0x301, 0x5A, 0x307, 0x7A, 0x307, 0x5A, 0x30C, 0x7A, 0x30C, 0x4F,
    0x31B, 0x6F, 0x31B, 0x55, 0x31B, 0x75, 0x31B, 0x41, 0x30C, 0x61, 0x30C, 0x49, 0x30C, 0x69,
    0x30C, 0x4F, 0x30C, 0x6F, 0x30C, 0x55, 0x30C, 0x75, 0x30C, 0x55, 0x308, 0x304, 0x75, 0x308,
    0x304, 0x55, 0x308, 0x301, 0x75, 0x308, 0x301, 0x55, 0x308, 0x30C, 0x75, 0x308, 0x30C, 0x55,
    0x308, 0x300, 0x75, 0x308, 0x300, 0x41, 0x308, 0x304, 0x61, 0x308, 0x304, 0x41, 0x307, 0x304,
    0x61, 0x307, 0x304, 0xC6, 0x304, 0xE6, 0x304, 0x47, 0x30C, 0x67, 0x30C, 0x4B, 0x30C, 0x6B,
    0x30C, 0x4F, 0x328, 0x6F, 0x328, 0x4F, 0x328, 0x304, 0x6F, 0x328, 0x304, 0x1B7, 0x30C, 0x292,
    0x30C, 0x6A, 0x30C, 0x47, 0x301, 0x67, 0x301, 0x4E, 0x300, 0x6E, 0x300, 0x41, 0x30A, 0x301,
    0x61, 0x30A, 0x301, 0xC6, 0x301, 0xE6, 0x301, 0xD8, 0x301, 0xF8, 0x301, 0x41, 0x30F, 0x61,
    0x30F, 0x41, 0x311, 0x61, 0x311, 0x45, 0x30F, 0x65, 0x30F, 0x45, 0x311, 0x65, 0x311, 0x49,
    0x30F, 0x69, 0x30F, 0x49, 0x311, 0x69, 0x311, 0x4F, 0x30F, 0x6F, 0x30F, 0x4F, 0x311, 0x6F,
    0x311, 0x52, 0x30F, 0x72, 0x30F, 0x52, 0x311, 0x72, 0x311, 0x55, 0x30F, 0x75, 0x30F, 0x55,
    0x311, 0x75, 0x311, 0x53, 0x326, 0x73, 0x326, 0x54, 0x326, 0x74, 0x326, 0x48, 0x30C, 0x68,
    0x30C, 0x41, 0x307, 0x61, 0x307, 0x45, 0x327, 0x65, 0x327, 0x4F, 0x308, 0x304, 0x6F, 0x308,
    0x304, 0x4F, 0x303, 0x304, 0x6F, 0x303, 0x304, 0x4F, 0x307, 0x6F, 0x307, 0x4F, 0x307, 0x304,
    0x6F, 0x307, 0x304, 0x59, 0x304, 0x79, 0x304, 0x300, 0x301, 0x313, 0x308, 0x301, 0x2B9, 0x3B,
    0xA8, 0x301, 0x391, 0x301, 0xB7, 0x395, 0x301, 0x397, 0x301, 0x399, 0x301, 0x39F, 0x301, 0x3A5,
    0x301, 0x3A9, 0x301, 0x3B9, 0x308, 0x301, 0x399, 0x308, 0x3A5, 0x308, 0x3B1, 0x301, 0x3B5,
    0x301, 0x3B7, 0x301, 0x3B9, 0x301, 0x3C5, 0x308, 0x301, 0x3B9, 0x308, 0x3C5, 0x308, 0x3BF,
    0x301, 0x3C5, 0x301, 0x3C9, 0x301, 0x3D2, 0x301, 0x3D2, 0x308, 0x415, 0x300, 0x415, 0x308,
    0x413, 0x301, 0x406, 0x308, 0x41A, 0x301, 0x418, 0x300, 0x423, 0x306, 0x418, 0x306, 0x438,
    0x306, 0x435, 0x300, 0x435, 0x308, 0x433, 0x301, 0x456, 0x308, 0x43A, 0x301, 0x438, 0x300,
    0x443, 0x306, 0x474, 0x30F, 0x475, 0x30F, 0x416, 0x306, 0x436, 0x306, 0x410, 0x306, 0x430,
    0x306, 0x410, 0x308, 0x430, 0x308, 0x415, 0x306, 0x435, 0x306, 0x4D8, 0x308, 0x4D9, 0x308,
    0x416, 0x308, 0x436, 0x308, 0x417, 0x308, 0x437, 0x308, 0x418, 0x304, 0x438, 0x304, 0x418,
    0x308, 0x438, 0x308, 0x41E, 0x308, 0x43E, 0x308, 0x4E8, 0x308, 0x4E9, 0x308, 0x42D, 0x308,
    0x44D, 0x308, 0x423, 0x304, 0x443, 0x304, 0x423, 0x308, 0x443, 0x308, 0x423, 0x30B, 0x443,
    0x30B, 0x427, 0x308, 0x447, 0x308, 0x42B, 0x308, 0x44B, 0x308, 0x627, 0x653, 0x627, 0x654,
    0x648, 0x654, 0x627, 0x655, 0x64A, 0x654, 0x6D5, 0x654, 0x6C1, 0x654, 0x6D2, 0x654, 0x928,
    0x93C, 0x930, 0x93C, 0x933, 0x93C, 0x915, 0x93C, 0x916, 0x93C, 0x917, 0x93C, 0x91C, 0x93C,
    0x921, 0x93C, 0x922, 0x93C, 0x92B, 0x93C, 0x92F, 0x93C, 0x9C7, 0x9BE, 0x9C7, 0x9D7, 0x9A1,
    0x9BC, 0x9A2, 0x9BC, 0x9AF, 0x9BC, 0xA32, 0xA3C, 0xA38, 0xA3C, 0xA16, 0xA3C, 0xA17, 0xA3C,
    0xA1C, 0xA3C, 0xA2B, 0xA3C, 0xB47, 0xB56, 0xB47, 0xB3E, 0xB47, 0xB57, 0xB21, 0xB3C, 0xB22,
    0xB3C, 0xB92, 0xBD7, 0xBC6, 0xBBE, 0xBC7, 0xBBE, 0xBC6, 0xBD7, 0xC46, 0xC56, 0xCBF, 0xCD5,
    0xCC6, 0xCD5, 0xCC6, 0xCD6, 0xCC6, 0xCC2, 0xCC6, 0xCC2, 0xCD5, 0xD46, 0xD3E, 0xD47, 0xD3E,
    0xD46, 0xD57, 0xDD9, 0xDCA, 0xDD9, 0xDCF, 0xDD9, 0xDCF, 0xDCA, 0xDD9, 0xDDF, 0xF42, 0xFB7,
    0xF4C, 0xFB7, 0xF51, 0xFB7, 0xF56, 0xFB7, 0xF5B, 0xFB7, 0xF40, 0xFB5, 0xF71, 0xF72, 0xF71,
    0xF74, 0xFB2, 0xF80, 0xFB3, 0xF80, 0xF71, 0xF80, 0xF92, 0xFB7, 0xF9C, 0xFB7, 0xFA1, 0xFB7,
    0xFA6, 0xFB7, 0xFAB, 0xFB7, 0xF90, 0xFB5, 0x1025, 0x102E, 0x1B05, 0x1B35, 0x1B07, 0x1B35,
    0x1B09, 0x1B35, 0x1B0B, 0x1B35, 0x1B0D, 0x1B35, 0x1B11, 0x1B35, 0x1B3A, 0x1B35, 0x1B3C, 0x1B35,
    0x1B3E, 0x1B35, 0x1B3F, 0x1B35, 0x1B42, 0x1B35, 0x41, 0x325, 0x61, 0x325, 0x42, 0x307, 0x62,
    0x307, 0x42, 0x323, 0x62, 0x323, 0x42, 0x331, 0x62, 0x331, 0x43, 0x327, 0x301, 0x63, 0x327,
    0x301, 0x44, 0x307, 0x64, 0x307, 0x44, 0x323, 0x64, 0x323, 0x44, 0x331, 0x64, 0x331, 0x44,
    0x327, 0x64, 0x327, 0x44, 0x32D, 0x64, 0x32D, 0x45, 0x304, 0x300, 0x65, 0x304, 0x300, 0x45,
    0x304, 0x301, 0x65, 0x304, 0x301, 0x45, 0x32D, 0x65, 0x32D, 0x45, 0x330, 0x65, 0x330, 0x45,
    0x327, 0x306, 0x65, 0x327, 0x306, 0x46, 0x307, 0x66, 0x307, 0x47, 0x304, 0x67, 0x304, 0x48,
    0x307, 0x68, 0x307, 0x48, 0x323, 0x68, 0x323, 0x48, 0x308, 0x68, 0x308, 0x48, 0x327, 0x68,
    0x327, 0x48, 0x32E, 0x68, 0x32E, 0x49, 0x330, 0x69, 0x330, 0x49, 0x308, 0x301, 0x69, 0x308,
    0x301, 0x4B, 0x301, 0x6B, 0x301, 0x4B, 0x323, 0x6B, 0x323, 0x4B, 0x331, 0x6B, 0x331, 0x4C,
    0x323, 0x6C, 0x323, 0x4C, 0x323, 0x304, 0x6C, 0x323, 0x304, 0x4C, 0x331, 0x6C, 0x331, 0x4C,
    0x32D, 0x6C, 0x32D, 0x4D, 0x301, 0x6D, 0x301, 0x4D, 0x307, 0x6D, 0x307, 0x4D, 0x323, 0x6D,
    0x323, 0x4E, 0x307, 0x6E, 0x307, 0x4E, 0x323, 0x6E, 0x323, 0x4E, 0x331, 0x6E, 0x331, 0x4E,
    0x32D, 0x6E, 0x32D, 0x4F, 0x303, 0x301, 0x6F, 0x303, 0x301, 0x4F, 0x303, 0x308, 0x6F, 0x303,
    0x308, 0x4F, 0x304, 0x300, 0x6F, 0x304, 0x300, 0x4F, 0x304, 0x301, 0x6F, 0x304, 0x301, 0x50,
    0x301, 0x70, 0x301, 0x50, 0x307, 0x70, 0x307, 0x52, 0x307, 0x72, 0x307, 0x52, 0x323, 0x72,
    0x323, 0x52, 0x323, 0x304, 0x72, 0x323, 0x304, 0x52, 0x331, 0x72, 0x331, 0x53, 0x307, 0x73,
    0x307, 0x53, 0x323, 0x73, 0x323, 0x53, 0x301, 0x307, 0x73, 0x301, 0x307, 0x53, 0x30C, 0x307,
    0x73, 0x30C, 0x307, 0x53, 0x323, 0x307, 0x73, 0x323, 0x307, 0x54, 0x307, 0x74, 0x307, 0x54,
    0x323, 0x74, 0x323, 0x54, 0x331, 0x74, 0x331, 0x54, 0x32D, 0x74, 0x32D, 0x55, 0x324, 0x75,
    0x324, 0x55, 0x330, 0x75, 0x330, 0x55, 0x32D, 0x75, 0x32D, 0x55, 0x303, 0x301, 0x75, 0x303,
    0x301, 0x55, 0x304, 0x308, 0x75, 0x304, 0x308, 0x56, 0x303, 0x76, 0x303, 0x56, 0x323, 0x76,
    0x323, 0x57, 0x300, 0x77, 0x300, 0x57, 0x301, 0x77, 0x301, 0x57, 0x308, 0x77, 0x308, 0x57,
    0x307, 0x77, 0x307, 0x57, 0x323, 0x77, 0x323, 0x58, 0x307, 0x78, 0x307, 0x58, 0x308, 0x78,
    0x308, 0x59, 0x307, 0x79, 0x307, 0x5A, 0x302, 0x7A, 0x302, 0x5A, 0x323, 0x7A, 0x323, 0x5A,
    0x331, 0x7A, 0x331, 0x68, 0x331, 0x74, 0x308, 0x77, 0x30A, 0x79, 0x30A, 0x17F, 0x307, 0x41,
    0x323, 0x61, 0x323, 0x41, 0x309, 0x61, 0x309, 0x41, 0x302, 0x301, 0x61, 0x302, 0x301, 0x41,
    0x302, 0x300, 0x61, 0x302, 0x300, 0x41, 0x302, 0x309, 0x61, 0x302, 0x309, 0x41, 0x302, 0x303,
    0x61, 0x302, 0x303, 0x41, 0x323, 0x302, 0x61, 0x323, 0x302, 0x41, 0x306, 0x301, 0x61, 0x306,
    0x301, 0x41, 0x306, 0x300, 0x61, 0x306, 0x300, 0x41, 0x306, 0x309, 0x61, 0x306, 0x309, 0x41,
    0x306, 0x303, 0x61, 0x306, 0x303, 0x41, 0x323, 0x306, 0x61, 0x323, 0x306, 0x45, 0x323, 0x65,
    0x323, 0x45, 0x309, 0x65, 0x309, 0x45, 0x303, 0x65, 0x303, 0x45, 0x302, 0x301, 0x65, 0x302,
    0x301, 0x45, 0x302, 0x300, 0x65, 0x302, 0x300, 0x45, 0x302, 0x309, 0x65, 0x302, 0x309, 0x45,
    0x302, 0x303, 0x65, 0x302, 0x303, 0x45, 0x323, 0x302, 0x65, 0x323, 0x302, 0x49, 0x309, 0x69,
    0x309, 0x49, 0x323, 0x69, 0x323, 0x4F, 0x323, 0x6F, 0x323, 0x4F, 0x309, 0x6F, 0x309, 0x4F,
    0x302, 0x301, 0x6F, 0x302, 0x301, 0x4F, 0x302, 0x300, 0x6F, 0x302, 0x300, 0x4F, 0x302, 0x309,
    0x6F, 0x302, 0x309, 0x4F, 0x302, 0x303, 0x6F, 0x302, 0x303, 0x4F, 0x323, 0x302, 0x6F, 0x323,
    0x302, 0x4F, 0x31B, 0x301, 0x6F, 0x31B, 0x301, 0x4F, 0x31B, 0x300, 0x6F, 0x31B, 0x300, 0x4F,
    0x31B, 0x309, 0x6F, 0x31B, 0x309, 0x4F, 0x31B, 0x303, 0x6F, 0x31B, 0x303, 0x4F, 0x31B, 0x323,
    0x6F, 0x31B, 0x323, 0x55, 0x323, 0x75, 0x323, 0x55, 0x309, 0x75, 0x309, 0x55, 0x31B, 0x301,
    0x75, 0x31B, 0x301, 0x55, 0x31B, 0x300, 0x75, 0x31B, 0x300, 0x55, 0x31B, 0x309, 0x75, 0x31B,
    0x309, 0x55, 0x31B, 0x303, 0x75, 0x31B, 0x303, 0x55, 0x31B, 0x323, 0x75, 0x31B, 0x323, 0x59,
    0x300, 0x79, 0x300, 0x59, 0x323, 0x79, 0x323, 0x59, 0x309, 0x79, 0x309, 0x59, 0x303, 0x79,
    0x303, 0x3B1, 0x313, 0x3B1, 0x314, 0x3B1, 0x313, 0x300, 0x3B1, 0x314, 0x300, 0x3B1, 0x313,
    0x301, 0x3B1, 0x314, 0x301, 0x3B1, 0x313, 0x342, 0x3B1, 0x314, 0x342, 0x391, 0x313, 0x391,
    0x314, 0x391, 0x313, 0x300, 0x391, 0x314, 0x300, 0x391, 0x313, 0x301, 0x391, 0x314, 0x301,
    0x391, 0x313, 0x342, 0x391, 0x314, 0x342, 0x3B5, 0x313, 0x3B5, 0x314, 0x3B5, 0x313, 0x300,
    0x3B5, 0x314, 0x300, 0x3B5, 0x313, 0x301, 0x3B5, 0x314, 0x301, 0x395, 0x313, 0x395, 0x314,
    0x395, 0x313, 0x300, 0x395, 0x314, 0x300, 0x395, 0x313, 0x301, 0x395, 0x314, 0x301, 0x3B7,
    0x313, 0x3B7, 0x314, 0x3B7, 0x313, 0x300, 0x3B7, 0x314, 0x300, 0x3B7, 0x313, 0x301, 0x3B7,
    0x314, 0x301, 0x3B7, 0x313, 0x342, 0x3B7, 0x314, 0x342, 0x397, 0x313, 0x397, 0x314, 0x397,
    0x313, 0x300, 0x397, 0x314, 0x300, 0x397, 0x313, 0x301, 0x397, 0x314, 0x301, 0x397, 0x313,
    0x342, 0x397, 0x314, 0x342, 0x3B9, 0x313, 0x3B9, 0x314, 0x3B9, 0x313, 0x300, 0x3B9, 0x314,
    0x300, 0x3B9, 0x313, 0x301, 0x3B9, 0x314, 0x301, 0x3B9, 0x313, 0x342, 0x3B9, 0x314, 0x342,
    0x399, 0x313, 0x399, 0x314, 0x399, 0x313, 0x300, 0x399, 0x314, 0x300, 0x399, 0x313, 0x301,
    0x399, 0x314, 0x301, 0x399, 0x313, 0x342, 0x399, 0x314, 0x342, 0x3BF, 0x313, 0x3BF, 0x314,
    0x3BF, 0x313, 0x300, 0x3BF, 0x314, 0x300, 0x3BF, 0x313, 0x301, 0x3BF, 0x314, 0x301, 0x39F,
    0x313, 0x39F, 0x314, 0x39F, 0x313, 0x300, 0x39F, 0x314, 0x300, 0x39F, 0x313, 0x301, 0x39F,
    0x314, 0x301, 0x3C5, 0x313, 0x3C5, 0x314, 0x3C5, 0x313, 0x300, 0x3C5, 0x314, 0x300, 0x3C5,
    0x313, 0x301, 0x3C5, 0x314, 0x301, 0x3C5, 0x313, 0x342, 0x3C5, 0x314, 0x342, 0x3A5, 0x314,
    0x3A5, 0x314, 0x300, 0x3A5, 0x314, 0x301, 0x3A5, 0x314, 0x342, 0x3C9, 0x313, 0x3C9, 0x314,
    0x3C9, 0x313, 0x300, 0x3C9, 0x314, 0x300, 0x3C9, 0x313, 0x301, 0x3C9, 0x314, 0x301, 0x3C9,
    0x313, 0x342, 0x3C9, 0x314, 0x342, 0x3A9, 0x313, 0x3A9, 0x314, 0x3A9, 0x313, 0x300, 0x3A9,
    0x314, 0x300, 0x3A9, 0x313, 0x301, 0x3A9, 0x314, 0x301, 0x3A9, 0x313, 0x342, 0x3A9, 0x314,
    0x342, 0x3B1, 0x300, 0x3B1, 0x301, 0x3B5, 0x300, 0x3B5, 0x301, 0x3B7, 0x300, 0x3B7, 0x301,
    0x3B9, 0x300, 0x3B9, 0x301, 0x3BF, 0x300, 0x3BF, 0x301, 0x3C5, 0x300, 0x3C5, 0x301, 0x3C9,
    0x300, 0x3C9, 0x301, 0x3B1, 0x313, 0x345, 0x3B1, 0x314, 0x345, 0x3B1, 0x313, 0x300, 0x345,
    0x3B1, 0x314, 0x300, 0x345, 0x3B1, 0x313, 0x301, 0x345, 0x3B1, 0x314, 0x301, 0x345, 0x3B1,
    0x313, 0x342, 0x345, 0x3B1, 0x314, 0x342, 0x345, 0x391, 0x313, 0x345, 0x391, 0x314, 0x345,
    0x391, 0x313, 0x300, 0x345, 0x391, 0x314, 0x300, 0x345, 0x391, 0x313, 0x301, 0x345, 0x391,
    0x314, 0x301, 0x345, 0x391, 0x313, 0x342, 0x345, 0x391, 0x314, 0x342, 0x345, 0x3B7, 0x313,
    0x345, 0x3B7, 0x314, 0x345, 0x3B7, 0x313, 0x300, 0x345, 0x3B7, 0x314, 0x300, 0x345, 0x3B7,
    0x313, 0x301, 0x345, 0x3B7, 0x314, 0x301, 0x345, 0x3B7, 0x313, 0x342, 0x345, 0x3B7, 0x314,
    0x342, 0x345, 0x397, 0x313, 0x345, 0x397, 0x314, 0x345, 0x397, 0x313, 0x300, 0x345, 0x397,
    0x314, 0x300, 0x345, 0x397, 0x313, 0x301, 0x345, 0x397, 0x314, 0x301, 0x345, 0x397, 0x313,
    0x342, 0x345, 0x397, 0x314, 0x342, 0x345, 0x3C9, 0x313, 0x345, 0x3C9, 0x314, 0x345, 0x3C9,
    0x313, 0x300, 0x345, 0x3C9, 0x314, 0x300, 0x345, 0x3C9, 0x313, 0x301, 0x345, 0x3C9, 0x314,
    0x301, 0x345, 0x3C9, 0x313, 0x342, 0x345, 0x3C9, 0x314, 0x342, 0x345, 0x3A9, 0x313, 0x345,
    0x3A9, 0x314, 0x345, 0x3A9, 0x313, 0x300, 0x345, 0x3A9, 0x314, 0x300, 0x345, 0x3A9, 0x313,
    0x301, 0x345, 0x3A9, 0x314, 0x301, 0x345, 0x3A9, 0x313, 0x342, 0x345, 0x3A9, 0x314, 0x342,
    0x345, 0x3B1, 0x306, 0x3B1, 0x304, 0x3B1, 0x300, 0x345, 0x3B1, 0x345, 0x3B1, 0x301, 0x345,
    0x3B1, 0x342, 0x3B1, 0x342, 0x345, 0x391, 0x306, 0x391, 0x304, 0x391, 0x300, 0x391, 0x301,
    0x391, 0x345, 0x3B9, 0xA8, 0x342, 0x3B7, 0x300, 0x345, 0x3B7, 0x345, 0x3B7, 0x301, 0x345, 0x3B7,
    0x342, 0x3B7, 0x342, 0x345, 0x395, 0x300, 0x395, 0x301, 0x397, 0x300, 0x397, 0x301, 0x397,
    0x345, 0x1FBF, 0x300, 0x1FBF, 0x301, 0x1FBF, 0x342, 0x3B9, 0x306, 0x3B9, 0x304, 0x3B9, 0x308,
    0x300, 0x3B9, 0x308, 0x301, 0x3B9, 0x342, 0x3B9, 0x308, 0x342, 0x399, 0x306, 0x399, 0x304,
    0x399, 0x300, 0x399, 0x301, 0x1FFE, 0x300, 0x1FFE, 0x301, 0x1FFE, 0x342, 0x3C5, 0x306, 0x3C5,
    0x304, 0x3C5, 0x308, 0x300, 0x3C5, 0x308, 0x301, 0x3C1, 0x313, 0x3C1, 0x314, 0x3C5, 0x342,
    0x3C5, 0x308, 0x342, 0x3A5, 0x306, 0x3A5, 0x304, 0x3A5, 0x300, 0x3A5, 0x301, 0x3A1, 0x314, 0xA8,
    0x300, 0xA8, 0x301, 0x60, 0x3C9, 0x300, 0x345, 0x3C9, 0x345, 0x3C9, 0x301, 0x345, 0x3C9, 0x342,
    0x3C9, 0x342, 0x345, 0x39F, 0x300, 0x39F, 0x301, 0x3A9, 0x300, 0x3A9, 0x301, 0x3A9, 0x345, 0xB4,
    0x2002, 0x2003, 0x3A9, 0x4B, 0x41, 0x30A, 0x2190, 0x338, 0x2192, 0x338, 0x2194, 0x338, 0x21D0,
    0x338, 0x21D4, 0x338, 0x21D2, 0x338, 0x2203, 0x338, 0x2208, 0x338, 0x220B, 0x338, 0x2223, 0x338,
    0x2225, 0x338, 0x223C, 0x338, 0x2243, 0x338, 0x2245, 0x338, 0x2248, 0x338, 0x3D, 0x338, 0x2261,
    0x338, 0x224D, 0x338, 0x3C, 0x338, 0x3E, 0x338, 0x2264, 0x338, 0x2265, 0x338, 0x2272, 0x338,
    0x2273, 0x338, 0x2276, 0x338, 0x2277, 0x338, 0x227A, 0x338, 0x227B, 0x338, 0x2282, 0x338,
    0x2283, 0x338, 0x2286, 0x338, 0x2287, 0x338, 0x22A2, 0x338, 0x22A8, 0x338, 0x22A9, 0x338,
    0x22AB, 0x338, 0x227C, 0x338, 0x227D, 0x338, 0x2291, 0x338, 0x2292, 0x338, 0x22B2, 0x338,
    0x22B3, 0x338, 0x22B4, 0x338, 0x22B5, 0x338, 0x3008, 0x3009, 0x2ADD, 0x338, 0x304B, 0x3099,
    0x304D, 0x3099, 0x304F, 0x3099, 0x3051, 0x3099, 0x3053, 0x3099, 0x3055, 0x3099, 0x3057, 0x3099,
    0x3059, 0x3099, 0x305B, 0x3099, 0x305D, 0x3099, 0x305F, 0x3099, 0x3061, 0x3099, 0x3064, 0x3099,
    0x3066, 0x3099, 0x3068, 0x3099, 0x306F, 0x3099, 0x306F, 0x309A, 0x3072, 0x3099, 0x3072, 0x309A,
    0x3075, 0x3099, 0x3075, 0x309A, 0x3078, 0x3099, 0x3078, 0x309A, 0x307B, 0x3099, 0x307B, 0x309A,
    0x3046, 0x3099, 0x309D, 0x3099, 0x30AB, 0x3099, 0x30AD, 0x3099, 0x30AF, 0x3099, 0x30B1, 0x3099,
    0x30B3, 0x3099, 0x30B5, 0x3099, 0x30B7, 0x3099, 0x30B9, 0x3099, 0x30BB, 0x3099, 0x30BD, 0x3099,
    0x30BF, 0x3099, 0x30C1, 0x3099, 0x30C4, 0x3099, 0x30C6, 0x3099, 0x30C8, 0x3099, 0x30CF, 0x3099,
    0x30CF, 0x309A, 0x30D2, 0x3099, 0x30D2, 0x309A, 0x30D5, 0x3099, 0x30D5, 0x309A, 0x30D8, 0x3099,
    0x30D8, 0x309A, 0x30DB, 0x3099, 0x30DB, 0x309A, 0x30A6, 0x3099, 0x30EF, 0x3099, 0x30F0, 0x3099,
    0x30F1, 0x3099, 0x30F2, 0x3099, 0x30FD, 0x3099, 0x8C48, 0x66F4, 0x8ECA, 0x8CC8, 0x6ED1, 0x4E32,
    0x53E5, 0x9F9C, 0x9F9C, 0x5951, 0x91D1, 0x5587, 0x5948, 0x61F6, 0x7669, 0x7F85, 0x863F, 0x87BA,
    0x88F8, 0x908F, 0x6A02, 0x6D1B, 0x70D9, 0x73DE, 0x843D, 0x916A, 0x99F1, 0x4E82, 0x5375, 0x6B04,
    0x721B, 0x862D, 0x9E1E, 0x5D50, 0x6FEB, 0x85CD, 0x8964, 0x62C9, 0x81D8, 0x881F, 0x5ECA, 0x6717,
    0x6D6A, 0x72FC, 0x90CE, 0x4F86, 0x51B7, 0x52DE, 0x64C4, 0x6AD3, 0x7210, 0x76E7, 0x8001, 0x8606,
    0x865C, 0x8DEF, 0x9732, 0x9B6F, 0x9DFA, 0x788C, 0x797F, 0x7DA0, 0x83C9, 0x9304, 0x9E7F, 0x8AD6,
    0x58DF, 0x5F04, 0x7C60, 0x807E, 0x7262, 0x78CA, 0x8CC2, 0x96F7, 0x58D8, 0x5C62, 0x6A13, 0x6DDA,
    0x6F0F, 0x7D2F, 0x7E37, 0x964B, 0x52D2, 0x808B, 0x51DC, 0x51CC, 0x7A1C, 0x7DBE, 0x83F1, 0x9675,
    0x8B80, 0x62CF, 0x6A02, 0x8AFE, 0x4E39, 0x5BE7, 0x6012, 0x7387, 0x7570, 0x5317, 0x78FB, 0x4FBF,
    0x5FA9, 0x4E0D, 0x6CCC, 0x6578, 0x7D22, 0x53C3, 0x585E, 0x7701, 0x8449, 0x8AAA, 0x6BBA, 0x8FB0,
    0x6C88, 0x62FE, 0x82E5, 0x63A0, 0x7565, 0x4EAE, 0x5169, 0x51C9, 0x6881, 0x7CE7, 0x826F, 0x8AD2,
    0x91CF, 0x52F5, 0x5442, 0x5973, 0x5EEC, 0x65C5, 0x6FFE, 0x792A, 0x95AD, 0x9A6A, 0x9E97, 0x9ECE,
    0x529B, 0x66C6, 0x6B77, 0x8F62, 0x5E74, 0x6190, 0x6200, 0x649A, 0x6F23, 0x7149, 0x7489, 0x79CA,
    0x7DF4, 0x806F, 0x8F26, 0x84EE, 0x9023, 0x934A, 0x5217, 0x52A3, 0x54BD, 0x70C8, 0x88C2, 0x8AAA,
    0x5EC9, 0x5FF5, 0x637B, 0x6BAE, 0x7C3E, 0x7375, 0x4EE4, 0x56F9, 0x5BE7, 0x5DBA, 0x601C, 0x73B2,
    0x7469, 0x7F9A, 0x8046, 0x9234, 0x96F6, 0x9748, 0x9818, 0x4F8B, 0x79AE, 0x91B4, 0x96B8, 0x60E1,
    0x4E86, 0x50DA, 0x5BEE, 0x5C3F, 0x6599, 0x6A02, 0x71CE, 0x7642, 0x84FC, 0x907C, 0x9F8D, 0x6688,
    0x962E, 0x5289, 0x677B, 0x67F3, 0x6D41, 0x6E9C, 0x7409, 0x7559, 0x786B, 0x7D10, 0x985E, 0x516D,
    0x622E, 0x9678, 0x502B, 0x5D19, 0x6DEA, 0x8F2A, 0x5F8B, 0x6144, 0x6817, 0x7387, 0x9686, 0x5229,
    0x540F, 0x5C65, 0x6613, 0x674E, 0x68A8, 0x6CE5, 0x7406, 0x75E2, 0x7F79, 0x88CF, 0x88E1, 0x91CC,
    0x96E2, 0x533F, 0x6EBA, 0x541D, 0x71D0, 0x7498, 0x85FA, 0x96A3, 0x9C57, 0x9E9F, 0x6797, 0x6DCB,
    0x81E8, 0x7ACB, 0x7B20, 0x7C92, 0x72C0, 0x7099, 0x8B58, 0x4EC0, 0x8336, 0x523A, 0x5207, 0x5EA6,
    0x62D3, 0x7CD6, 0x5B85, 0x6D1E, 0x66B4, 0x8F3B, 0x884C, 0x964D, 0x898B, 0x5ED3, 0x5140, 0x55C0,
    0x585A, 0x6674, 0x51DE, 0x732A, 0x76CA, 0x793C, 0x795E, 0x7965, 0x798F, 0x9756, 0x7CBE, 0x7FBD,
    0x8612, 0x8AF8, 0x9038, 0x90FD, 0x98EF, 0x98FC, 0x9928, 0x9DB4, 0x90DE, 0x96B7, 0x4FAE, 0x50E7,
    0x514D, 0x52C9, 0x52E4, 0x5351, 0x559D, 0x5606, 0x5668, 0x5840, 0x58A8, 0x5C64, 0x5C6E, 0x6094,
    0x6168, 0x618E, 0x61F2, 0x654F, 0x65E2, 0x6691, 0x6885, 0x6D77, 0x6E1A, 0x6F22, 0x716E, 0x722B,
    0x7422, 0x7891, 0x793E, 0x7949, 0x7948, 0x7950, 0x7956, 0x795D, 0x798D, 0x798E, 0x7A40, 0x7A81,
    0x7BC0, 0x7DF4, 0x7E09, 0x7E41, 0x7F72, 0x8005, 0x81ED, 0x8279, 0x8279, 0x8457, 0x8910, 0x8996,
    0x8B01, 0x8B39, 0x8CD3, 0x8D08, 0x8FB6, 0x9038, 0x96E3, 0x97FF, 0x983B, 0x6075, 0x242EE, 0x8218,
    0x4E26, 0x51B5, 0x5168, 0x4F80, 0x5145, 0x5180, 0x52C7, 0x52FA, 0x559D, 0x5555, 0x5599, 0x55E2,
    0x585A, 0x58B3, 0x5944, 0x5954, 0x5A62, 0x5B28, 0x5ED2, 0x5ED9, 0x5F69, 0x5FAD, 0x60D8, 0x614E,
    0x6108, 0x618E, 0x6160, 0x61F2, 0x6234, 0x63C4, 0x641C, 0x6452, 0x6556, 0x6674, 0x6717, 0x671B,
    0x6756, 0x6B79, 0x6BBA, 0x6D41, 0x6EDB, 0x6ECB, 0x6F22, 0x701E, 0x716E, 0x77A7, 0x7235, 0x72AF,
    0x732A, 0x7471, 0x7506, 0x753B, 0x761D, 0x761F, 0x76CA, 0x76DB, 0x76F4, 0x774A, 0x7740, 0x78CC,
    0x7AB1, 0x7BC0, 0x7C7B, 0x7D5B, 0x7DF4, 0x7F3E, 0x8005, 0x8352, 0x83EF, 0x8779, 0x8941, 0x8986,
    0x8996, 0x8ABF, 0x8AF8, 0x8ACB, 0x8B01, 0x8AFE, 0x8AED, 0x8B39, 0x8B8A, 0x8D08, 0x8F38, 0x9072,
    0x9199, 0x9276, 0x967C, 0x96E3, 0x9756, 0x97DB, 0x97FF, 0x980B, 0x983B, 0x9B12, 0x9F9C, 0x2284A,
    0x22844, 0x233D5, 0x3B9D, 0x4018, 0x4039, 0x25249, 0x25CD0, 0x27ED3, 0x9F43, 0x9F8E, 0x5D9,
    0x5B4, 0x5F2, 0x5B7, 0x5E9, 0x5C1, 0x5E9, 0x5C2, 0x5E9, 0x5BC, 0x5C1, 0x5E9, 0x5BC, 0x5C2,
    0x5D0, 0x5B7, 0x5D0, 0x5B8, 0x5D0, 0x5BC, 0x5D1, 0x5BC, 0x5D2, 0x5BC, 0x5D3, 0x5BC, 0x5D4,
    0x5BC, 0x5D5, 0x5BC, 0x5D6, 0x5BC, 0x5D8, 0x5BC, 0x5D9, 0x5BC, 0x5DA, 0x5BC, 0x5DB, 0x5BC,
    0x5DC, 0x5BC, 0x5DE, 0x5BC, 0x5E0, 0x5BC, 0x5E1, 0x5BC, 0x5E3, 0x5BC, 0x5E4, 0x5BC, 0x5E6,
    0x5BC, 0x5E7, 0x5BC, 0x5E8, 0x5BC, 0x5E9, 0x5BC, 0x5EA, 0x5BC, 0x5D5, 0x5B9, 0x5D1, 0x5BF,
    0x5DB, 0x5BF, 0x5E4, 0x5BF, 0x11099, 0x110BA, 0x1109B, 0x110BA, 0x110A5, 0x110BA, 0x11131,
    0x11127, 0x11132, 0x11127, 0x11347, 0x1133E, 0x11347, 0x11357, 0x114B9, 0x114BA, 0x114B9,
    0x114B0, 0x114B9, 0x114BD, 0x115B8, 0x115AF, 0x115B9, 0x115AF, 0x11935, 0x11930, 0x1D157,
    0x1D165, 0x1D158, 0x1D165, 0x1D158, 0x1D165, 0x1D16E, 0x1D158, 0x1D165, 0x1D16F, 0x1D158,
    0x1D165, 0x1D170, 0x1D158, 0x1D165, 0x1D171, 0x1D158, 0x1D165, 0x1D172, 0x1D1B9, 0x1D165,
    0x1D1BA, 0x1D165, 0x1D1B9, 0x1D165, 0x1D16E, 0x1D1BA, 0x1D165, 0x1D16E, 0x1D1B9, 0x1D165,
    0x1D16F, 0x1D1BA, 0x1D165, 0x1D16F, 0x4E3D, 0x4E38, 0x4E41, 0x20122, 0x4F60, 0x4FAE, 0x4FBB,
    0x5002, 0x507A, 0x5099, 0x50E7, 0x50CF, 0x349E, 0x2063A, 0x514D, 0x5154, 0x5164, 0x5177,
    0x2051C, 0x34B9, 0x5167, 0x518D, 0x2054B, 0x5197, 0x51A4, 0x4ECC, 0x51AC, 0x51B5, 0x291DF,
    0x51F5, 0x5203, 0x34DF, 0x523B, 0x5246, 0x5272, 0x5277, 0x3515, 0x52C7, 0x52C9, 0x52E4, 0x52FA,
    0x5305, 0x5306, 0x5317, 0x5349, 0x5351, 0x535A, 0x5373, 0x537D, 0x537F, 0x537F, 0x537F, 0x20A2C,
    0x7070, 0x53CA, 0x53DF, 0x20B63, 0x53EB, 0x53F1, 0x5406, 0x549E, 0x5438, 0x5448, 0x5468, 0x54A2,
    0x54F6, 0x5510, 0x5553, 0x5563, 0x5584, 0x5584, 0x5599, 0x55AB, 0x55B3, 0x55C2, 0x5716, 0x5606,
    0x5717, 0x5651, 0x5674, 0x5207, 0x58EE, 0x57CE, 0x57F4, 0x580D, 0x578B, 0x5832, 0x5831, 0x58AC,
    0x214E4, 0x58F2, 0x58F7, 0x5906, 0x591A, 0x5922, 0x5962, 0x216A8, 0x216EA, 0x59EC, 0x5A1B,
    0x5A27, 0x59D8, 0x5A66, 0x36EE, 0x36FC, 0x5B08, 0x5B3E, 0x5B3E, 0x219C8, 0x5BC3, 0x5BD8, 0x5BE7,
    0x5BF3, 0x21B18, 0x5BFF, 0x5C06, 0x5F53, 0x5C22, 0x3781, 0x5C60, 0x5C6E, 0x5CC0, 0x5C8D,
    0x21DE4, 0x5D43, 0x21DE6, 0x5D6E, 0x5D6B, 0x5D7C, 0x5DE1, 0x5DE2, 0x382F, 0x5DFD, 0x5E28,
    0x5E3D, 0x5E69, 0x3862, 0x22183, 0x387C, 0x5EB0, 0x5EB3, 0x5EB6, 0x5ECA, 0x2A392, 0x5EFE,
    0x22331, 0x22331, 0x8201, 0x5F22, 0x5F22, 0x38C7, 0x232B8, 0x261DA, 0x5F62, 0x5F6B, 0x38E3,
    0x5F9A, 0x5FCD, 0x5FD7, 0x5FF9, 0x6081, 0x393A, 0x391C, 0x6094, 0x226D4, 0x60C7, 0x6148, 0x614C,
    0x614E, 0x614C, 0x617A, 0x618E, 0x61B2, 0x61A4, 0x61AF, 0x61DE, 0x61F2, 0x61F6, 0x6210, 0x621B,
    0x625D, 0x62B1, 0x62D4, 0x6350, 0x22B0C, 0x633D, 0x62FC, 0x6368, 0x6383, 0x63E4, 0x22BF1,
    0x6422, 0x63C5, 0x63A9, 0x3A2E, 0x6469, 0x647E, 0x649D, 0x6477, 0x3A6C, 0x654F, 0x656C, 0x2300A,
    0x65E3, 0x66F8, 0x6649, 0x3B19, 0x6691, 0x3B08, 0x3AE4, 0x5192, 0x5195, 0x6700, 0x669C, 0x80AD,
    0x43D9, 0x6717, 0x671B, 0x6721, 0x675E, 0x6753, 0x233C3, 0x3B49, 0x67FA, 0x6785, 0x6852, 0x6885,
    0x2346D, 0x688E, 0x681F, 0x6914, 0x3B9D, 0x6942, 0x69A3, 0x69EA, 0x6AA8, 0x236A3, 0x6ADB,
    0x3C18, 0x6B21, 0x238A7, 0x6B54, 0x3C4E, 0x6B72, 0x6B9F, 0x6BBA, 0x6BBB, 0x23A8D, 0x21D0B,
    0x23AFA, 0x6C4E, 0x23CBC, 0x6CBF, 0x6CCD, 0x6C67, 0x6D16, 0x6D3E, 0x6D77, 0x6D41, 0x6D69,
    0x6D78, 0x6D85, 0x23D1E, 0x6D34, 0x6E2F, 0x6E6E, 0x3D33, 0x6ECB, 0x6EC7, 0x23ED1, 0x6DF9,
    0x6F6E, 0x23F5E, 0x23F8E, 0x6FC6, 0x7039, 0x701E, 0x701B, 0x3D96, 0x704A, 0x707D, 0x7077,
    0x70AD, 0x20525, 0x7145, 0x24263, 0x719C, 0x243AB, 0x7228, 0x7235, 0x7250, 0x24608, 0x7280,
    0x7295, 0x24735, 0x24814, 0x737A, 0x738B, 0x3EAC, 0x73A5, 0x3EB8, 0x3EB8, 0x7447, 0x745C,
    0x7471, 0x7485, 0x74CA, 0x3F1B, 0x7524, 0x24C36, 0x753E, 0x24C92, 0x7570, 0x2219F, 0x7610,
    0x24FA1, 0x24FB8, 0x25044, 0x3FFC, 0x4008, 0x76F4, 0x250F3, 0x250F2, 0x25119, 0x25133, 0x771E,
    0x771F, 0x771F, 0x774A, 0x4039, 0x778B, 0x4046, 0x4096, 0x2541D, 0x784E, 0x788C, 0x78CC, 0x40E3,
    0x25626, 0x7956, 0x2569A, 0x256C5, 0x798F, 0x79EB, 0x412F, 0x7A40, 0x7A4A, 0x7A4F, 0x2597C,
    0x25AA7, 0x25AA7, 0x7AEE, 0x4202, 0x25BAB, 0x7BC6, 0x7BC9, 0x4227, 0x25C80, 0x7CD2, 0x42A0,
    0x7CE8, 0x7CE3, 0x7D00, 0x25F86, 0x7D63, 0x4301, 0x7DC7, 0x7E02, 0x7E45, 0x4334, 0x26228,
    0x26247, 0x4359, 0x262D9, 0x7F7A, 0x2633E, 0x7F95, 0x7FFA, 0x8005, 0x264DA, 0x26523, 0x8060,
    0x265A8, 0x8070, 0x2335F, 0x43D5, 0x80B2, 0x8103, 0x440B, 0x813E, 0x5AB5, 0x267A7, 0x267B5,
    0x23393, 0x2339C, 0x8201, 0x8204, 0x8F9E, 0x446B, 0x8291, 0x828B, 0x829D, 0x52B3, 0x82B1,
    0x82B3, 0x82BD, 0x82E6, 0x26B3C, 0x82E5, 0x831D, 0x8363, 0x83AD, 0x8323, 0x83BD, 0x83E7, 0x8457,
    0x8353, 0x83CA, 0x83CC, 0x83DC, 0x26C36, 0x26D6B, 0x26CD5, 0x452B, 0x84F1, 0x84F3, 0x8516,
    0x273CA, 0x8564, 0x26F2C, 0x455D, 0x4561, 0x26FB1, 0x270D2, 0x456B, 0x8650, 0x865C, 0x8667,
    0x8669, 0x86A9, 0x8688, 0x870E, 0x86E2, 0x8779, 0x8728, 0x876B, 0x8786, 0x45D7, 0x87E1, 0x8801,
    0x45F9, 0x8860, 0x8863, 0x27667, 0x88D7, 0x88DE, 0x4635, 0x88FA, 0x34BB, 0x278AE, 0x27966,
    0x46BE, 0x46C7, 0x8AA0, 0x8AED, 0x8B8A, 0x8C55, 0x27CA8, 0x8CAB, 0x8CC1, 0x8D1B, 0x8D77,
    0x27F2F, 0x20804, 0x8DCB, 0x8DBC, 0x8DF0, 0x208DE, 0x8ED4, 0x8F38, 0x285D2, 0x285ED, 0x9094,
    0x90F1, 0x9111, 0x2872E, 0x911B, 0x9238, 0x92D7, 0x92D8, 0x927C, 0x93F9, 0x9415, 0x28BFA,
    0x958B, 0x4995, 0x95B7, 0x28D77, 0x49E6, 0x96C3, 0x5DB2, 0x9723, 0x29145, 0x2921A, 0x4A6E,
    0x4A76, 0x97E0, 0x2940A, 0x4AB2, 0x29496, 0x980B, 0x980B, 0x9829, 0x295B6, 0x98E2, 0x4B33,
    0x9929, 0x99A7, 0x99C2, 0x99FE, 0x4BCE, 0x29B30, 0x9B12, 0x9C40, 0x9CFD, 0x4CCE, 0x4CED, 0x9D67,
    0x2A0CE, 0x4CF8, 0x2A105, 0x2A20E, 0x2A291, 0x9EBB, 0x4D56, 0x9EF9, 0x9EFE, 0x9F05, 0x9F0F,
    0x9F16, 0x9F3B, 0x2A600,
};

/* Primary composites: the pair (first << 21 | second), sorted, composes to uc_comp_result[i].
 * Hangul syllables are algorithmic. */
#define UC_COMP_COUNT 941
static const uint64_t uc_comp_pair[941] = {
    0x7800338ULL, 0x7A00338ULL, 0x7C00338ULL, 0x8200300ULL, 0x8200301ULL, 0x8200302ULL,
    0x8200303ULL, 0x8200304ULL, 0x8200306ULL, 0x8200307ULL, 0x8200308ULL, 0x8200309ULL,
    0x820030AULL, 0x820030CULL, 0x820030FULL, 0x8200311ULL, 0x8200323ULL, 0x8200325ULL,
    0x8200328ULL, 0x8400307ULL, 0x8400323ULL, 0x8400331ULL, 0x8600301ULL, 0x8600302ULL,
    0x8600307ULL, 0x860030CULL, 0x8600327ULL, 0x8800307ULL, 0x880030CULL, 0x8800323ULL,
    0x8800327ULL, 0x880032DULL, 0x8800331ULL, 0x8A00300ULL, 0x8A00301ULL, 0x8A00302ULL,
    0x8A00303ULL, 0x8A00304ULL, 0x8A00306ULL, 0x8A00307ULL, 0x8A00308ULL, 0x8A00309ULL,
    0x8A0030CULL, 0x8A0030FULL, 0x8A00311ULL, 0x8A00323ULL, 0x8A00327ULL, 0x8A00328ULL,
    0x8A0032DULL, 0x8A00330ULL, 0x8C00307ULL, 0x8E00301ULL, 0x8E00302ULL, 0x8E00304ULL,
    0x8E00306ULL, 0x8E00307ULL, 0x8E0030CULL, 0x8E00327ULL, 0x9000302ULL, 0x9000307ULL,
    0x9000308ULL, 0x900030CULL, 0x9000323ULL, 0x9000327ULL, 0x900032EULL, 0x9200300ULL,
    0x9200301ULL, 0x9200302ULL, 0x9200303ULL, 0x9200304ULL, 0x9200306ULL, 0x9200307ULL,
    0x9200308ULL, 0x9200309ULL, 0x920030CULL, 0x920030FULL, 0x9200311ULL, 0x9200323ULL,
    0x9200328ULL, 0x9200330ULL, 0x9400302ULL, 0x9600301ULL, 0x960030CULL, 0x9600323ULL,
    0x9600327ULL, 0x9600331ULL, 0x9800301ULL, 0x980030CULL, 0x9800323ULL, 0x9800327ULL,
    0x980032DULL, 0x9800331ULL, 0x9A00301ULL, 0x9A00307ULL, 0x9A00323ULL, 0x9C00300ULL,
    0x9C00301ULL, 0x9C00303ULL, 0x9C00307ULL, 0x9C0030CULL, 0x9C00323ULL, 0x9C00327ULL,
    0x9C0032DULL, 0x9C00331ULL, 0x9E00300ULL, 0x9E00301ULL, 0x9E00302ULL, 0x9E00303ULL,
    0x9E00304ULL, 0x9E00306ULL, 0x9E00307ULL, 0x9E00308ULL, 0x9E00309ULL, 0x9E0030BULL,
    0x9E0030CULL, 0x9E0030FULL, 0x9E00311ULL, 0x9E0031BULL, 0x9E00323ULL, 0x9E00328ULL,
    0xA000301ULL, 0xA000307ULL, 0xA400301ULL, 0xA400307ULL, 0xA40030CULL, 0xA40030FULL,
    0xA400311ULL, 0xA400323ULL, 0xA400327ULL, 0xA400331ULL, 0xA600301ULL, 0xA600302ULL,
    0xA600307ULL, 0xA60030CULL, 0xA600323ULL, 0xA600326ULL, 0xA600327ULL, 0xA800307ULL,
    0xA80030CULL, 0xA800323ULL, 0xA800326ULL, 0xA800327ULL, 0xA80032DULL, 0xA800331ULL,
    0xAA00300ULL, 0xAA00301ULL, 0xAA00302ULL, 0xAA00303ULL, 0xAA00304ULL, 0xAA00306ULL,
    0xAA00308ULL, 0xAA00309ULL, 0xAA0030AULL, 0xAA0030BULL, 0xAA0030CULL, 0xAA0030FULL,
    0xAA00311ULL, 0xAA0031BULL, 0xAA00323ULL, 0xAA00324ULL, 0xAA00328ULL, 0xAA0032DULL,
    0xAA00330ULL, 0xAC00303ULL, 0xAC00323ULL, 0xAE00300ULL, 0xAE00301ULL, 0xAE00302ULL,
    0xAE00307ULL, 0xAE00308ULL, 0xAE00323ULL, 0xB000307ULL, 0xB000308ULL, 0xB200300ULL,
    0xB200301ULL, 0xB200302ULL, 0xB200303ULL, 0xB200304ULL, 0xB200307ULL, 0xB200308ULL,
    0xB200309ULL, 0xB200323ULL, 0xB400301ULL, 0xB400302ULL, 0xB400307ULL, 0xB40030CULL,
    0xB400323ULL, 0xB400331ULL, 0xC200300ULL, 0xC200301ULL, 0xC200302ULL, 0xC200303ULL,
    0xC200304ULL, 0xC200306ULL, 0xC200307ULL, 0xC200308ULL, 0xC200309ULL, 0xC20030AULL,
    0xC20030CULL, 0xC20030FULL, 0xC200311ULL, 0xC200323ULL, 0xC200325ULL, 0xC200328ULL,
    0xC400307ULL, 0xC400323ULL, 0xC400331ULL, 0xC600301ULL, 0xC600302ULL, 0xC600307ULL,
    0xC60030CULL, 0xC600327ULL, 0xC800307ULL, 0xC80030CULL, 0xC800323ULL, 0xC800327ULL,
    0xC80032DULL, 0xC800331ULL, 0xCA00300ULL, 0xCA00301ULL, 0xCA00302ULL, 0xCA00303ULL,
    0xCA00304ULL, 0xCA00306ULL, 0xCA00307ULL, 0xCA00308ULL, 0xCA00309ULL, 0xCA0030CULL,
    0xCA0030FULL, 0xCA00311ULL, 0xCA00323ULL, 0xCA00327ULL, 0xCA00328ULL, 0xCA0032DULL,
    0xCA00330ULL, 0xCC00307ULL, 0xCE00301ULL, 0xCE00302ULL, 0xCE00304ULL, 0xCE00306ULL,
    0xCE00307ULL, 0xCE0030CULL, 0xCE00327ULL, 0xD000302ULL, 0xD000307ULL, 0xD000308ULL,
    0xD00030CULL, 0xD000323ULL, 0xD000327ULL, 0xD00032EULL, 0xD000331ULL, 0xD200300ULL,
    0xD200301ULL, 0xD200302ULL, 0xD200303ULL, 0xD200304ULL, 0xD200306ULL, 0xD200308ULL,
    0xD200309ULL, 0xD20030CULL, 0xD20030FULL, 0xD200311ULL, 0xD200323ULL, 0xD200328ULL,
    0xD200330ULL, 0xD400302ULL, 0xD40030CULL, 0xD600301ULL, 0xD60030CULL, 0xD600323ULL,
    0xD600327ULL, 0xD600331ULL, 0xD800301ULL, 0xD80030CULL, 0xD800323ULL, 0xD800327ULL,
    0xD80032DULL, 0xD800331ULL, 0xDA00301ULL, 0xDA00307ULL, 0xDA00323ULL, 0xDC00300ULL,
    0xDC00301ULL, 0xDC00303ULL, 0xDC00307ULL, 0xDC0030CULL, 0xDC00323ULL, 0xDC00327ULL,
    0xDC0032DULL, 0xDC00331ULL, 0xDE00300ULL, 0xDE00301ULL, 0xDE00302ULL, 0xDE00303ULL,
    0xDE00304ULL, 0xDE00306ULL, 0xDE00307ULL, 0xDE00308ULL, 0xDE00309ULL, 0xDE0030BULL,
    0xDE0030CULL, 0xDE0030FULL, 0xDE00311ULL, 0xDE0031BULL, 0xDE00323ULL, 0xDE00328ULL,
    0xE000301ULL, 0xE000307ULL, 0xE400301ULL, 0xE400307ULL, 0xE40030CULL, 0xE40030FULL,
    0xE400311ULL, 0xE400323ULL, 0xE400327ULL, 0xE400331ULL, 0xE600301ULL, 0xE600302ULL,
    0xE600307ULL, 0xE60030CULL, 0xE600323ULL, 0xE600326ULL, 0xE600327ULL, 0xE800307ULL,
    0xE800308ULL, 0xE80030CULL, 0xE800323ULL, 0xE800326ULL, 0xE800327ULL, 0xE80032DULL,
    0xE800331ULL, 0xEA00300ULL, 0xEA00301ULL, 0xEA00302ULL, 0xEA00303ULL, 0xEA00304ULL,
    0xEA00306ULL, 0xEA00308ULL, 0xEA00309ULL, 0xEA0030AULL, 0xEA0030BULL, 0xEA0030CULL,
    0xEA0030FULL, 0xEA00311ULL, 0xEA0031BULL, 0xEA00323ULL, 0xEA00324ULL, 0xEA00328ULL,
    0xEA0032DULL, 0xEA00330ULL, 0xEC00303ULL, 0xEC00323ULL, 0xEE00300ULL, 0xEE00301ULL,
    0xEE00302ULL, 0xEE00307ULL, 0xEE00308ULL, 0xEE0030AULL, 0xEE00323ULL, 0xF000307ULL,
    0xF000308ULL, 0xF200300ULL, 0xF200301ULL, 0xF200302ULL, 0xF200303ULL, 0xF200304ULL,
    0xF200307ULL, 0xF200308ULL, 0xF200309ULL, 0xF20030AULL, 0xF200323ULL, 0xF400301ULL,
    0xF400302ULL, 0xF400307ULL, 0xF40030CULL, 0xF400323ULL, 0xF400331ULL, 0x15000300ULL,
    0x15000301ULL, 0x15000342ULL, 0x18400300ULL, 0x18400301ULL, 0x18400303ULL, 0x18400309ULL,
    0x18800304ULL, 0x18A00301ULL, 0x18C00301ULL, 0x18C00304ULL, 0x18E00301ULL, 0x19400300ULL,
    0x19400301ULL, 0x19400303ULL, 0x19400309ULL, 0x19E00301ULL, 0x1A800300ULL, 0x1A800301ULL,
    0x1A800303ULL, 0x1A800309ULL, 0x1AA00301ULL, 0x1AA00304ULL, 0x1AA00308ULL, 0x1AC00304ULL,
    0x1B000301ULL, 0x1B800300ULL, 0x1B800301ULL, 0x1B800304ULL, 0x1B80030CULL, 0x1C400300ULL,
    0x1C400301ULL, 0x1C400303ULL, 0x1C400309ULL, 0x1C800304ULL, 0x1CA00301ULL, 0x1CC00301ULL,
    0x1CC00304ULL, 0x1CE00301ULL, 0x1D400300ULL, 0x1D400301ULL, 0x1D400303ULL, 0x1D400309ULL,
    0x1DE00301ULL, 0x1E800300ULL, 0x1E800301ULL, 0x1E800303ULL, 0x1E800309ULL, 0x1EA00301ULL,
    0x1EA00304ULL, 0x1EA00308ULL, 0x1EC00304ULL, 0x1F000301ULL, 0x1F800300ULL, 0x1F800301ULL,
    0x1F800304ULL, 0x1F80030CULL, 0x20400300ULL, 0x20400301ULL, 0x20400303ULL, 0x20400309ULL,
    0x20600300ULL, 0x20600301ULL, 0x20600303ULL, 0x20600309ULL, 0x22400300ULL, 0x22400301ULL,
    0x22600300ULL, 0x22600301ULL, 0x29800300ULL, 0x29800301ULL, 0x29A00300ULL, 0x29A00301ULL,
    0x2B400307ULL, 0x2B600307ULL, 0x2C000307ULL, 0x2C200307ULL, 0x2D000301ULL, 0x2D200301ULL,
    0x2D400308ULL, 0x2D600308ULL, 0x2FE00307ULL, 0x34000300ULL, 0x34000301ULL, 0x34000303ULL,
    0x34000309ULL, 0x34000323ULL, 0x34200300ULL, 0x34200301ULL, 0x34200303ULL, 0x34200309ULL,
    0x34200323ULL, 0x35E00300ULL, 0x35E00301ULL, 0x35E00303ULL, 0x35E00309ULL, 0x35E00323ULL,
    0x36000300ULL, 0x36000301ULL, 0x36000303ULL, 0x36000309ULL, 0x36000323ULL, 0x36E0030CULL,
    0x3D400304ULL, 0x3D600304ULL, 0x44C00304ULL, 0x44E00304ULL, 0x45000306ULL, 0x45200306ULL,
    0x45C00304ULL, 0x45E00304ULL, 0x5240030CULL, 0x72200300ULL, 0x72200301ULL, 0x72200304ULL,
    0x72200306ULL, 0x72200313ULL, 0x72200314ULL, 0x72200345ULL, 0x72A00300ULL, 0x72A00301ULL,
    0x72A00313ULL, 0x72A00314ULL, 0x72E00300ULL, 0x72E00301ULL, 0x72E00313ULL, 0x72E00314ULL,
    0x72E00345ULL, 0x73200300ULL, 0x73200301ULL, 0x73200304ULL, 0x73200306ULL, 0x73200308ULL,
    0x73200313ULL, 0x73200314ULL, 0x73E00300ULL, 0x73E00301ULL, 0x73E00313ULL, 0x73E00314ULL,
    0x74200314ULL, 0x74A00300ULL, 0x74A00301ULL, 0x74A00304ULL, 0x74A00306ULL, 0x74A00308ULL,
    0x74A00314ULL, 0x75200300ULL, 0x75200301ULL, 0x75200313ULL, 0x75200314ULL, 0x75200345ULL,
    0x75800345ULL, 0x75C00345ULL, 0x76200300ULL, 0x76200301ULL, 0x76200304ULL, 0x76200306ULL,
    0x76200313ULL, 0x76200314ULL, 0x76200342ULL, 0x76200345ULL, 0x76A00300ULL, 0x76A00301ULL,
    0x76A00313ULL, 0x76A00314ULL, 0x76E00300ULL, 0x76E00301ULL, 0x76E00313ULL, 0x76E00314ULL,
    0x76E00342ULL, 0x76E00345ULL, 0x77200300ULL, 0x77200301ULL, 0x77200304ULL, 0x77200306ULL,
    0x77200308ULL, 0x77200313ULL, 0x77200314ULL, 0x77200342ULL, 0x77E00300ULL, 0x77E00301ULL,
    0x77E00313ULL, 0x77E00314ULL, 0x78200313ULL, 0x78200314ULL, 0x78A00300ULL, 0x78A00301ULL,
    0x78A00304ULL, 0x78A00306ULL, 0x78A00308ULL, 0x78A00313ULL, 0x78A00314ULL, 0x78A00342ULL,
    0x79200300ULL, 0x79200301ULL, 0x79200313ULL, 0x79200314ULL, 0x79200342ULL, 0x79200345ULL,
    0x79400300ULL, 0x79400301ULL, 0x79400342ULL, 0x79600300ULL, 0x79600301ULL, 0x79600342ULL,
    0x79C00345ULL, 0x7A400301ULL, 0x7A400308ULL, 0x80C00308ULL, 0x82000306ULL, 0x82000308ULL,
    0x82600301ULL, 0x82A00300ULL, 0x82A00306ULL, 0x82A00308ULL, 0x82C00306ULL, 0x82C00308ULL,
    0x82E00308ULL, 0x83000300ULL, 0x83000304ULL, 0x83000306ULL, 0x83000308ULL, 0x83400301ULL,
    0x83C00308ULL, 0x84600304ULL, 0x84600306ULL, 0x84600308ULL, 0x8460030BULL, 0x84E00308ULL,
    0x85600308ULL, 0x85A00308ULL, 0x86000306ULL, 0x86000308ULL, 0x86600301ULL, 0x86A00300ULL,
    0x86A00306ULL, 0x86A00308ULL, 0x86C00306ULL, 0x86C00308ULL, 0x86E00308ULL, 0x87000300ULL,
    0x87000304ULL, 0x87000306ULL, 0x87000308ULL, 0x87400301ULL, 0x87C00308ULL, 0x88600304ULL,
    0x88600306ULL, 0x88600308ULL, 0x8860030BULL, 0x88E00308ULL, 0x89600308ULL, 0x89A00308ULL,
    0x8AC00308ULL, 0x8E80030FULL, 0x8EA0030FULL, 0x9B000308ULL, 0x9B200308ULL, 0x9D000308ULL,
    0x9D200308ULL, 0xC4E00653ULL, 0xC4E00654ULL, 0xC4E00655ULL, 0xC9000654ULL, 0xC9400654ULL,
    0xD8200654ULL, 0xDA400654ULL, 0xDAA00654ULL, 0x12500093CULL, 0x12600093CULL, 0x12660093CULL,
    0x138E009BEULL, 0x138E009D7ULL, 0x168E00B3EULL, 0x168E00B56ULL, 0x168E00B57ULL, 0x172400BD7ULL,
    0x178C00BBEULL, 0x178C00BD7ULL, 0x178E00BBEULL, 0x188C00C56ULL, 0x197E00CD5ULL, 0x198C00CC2ULL,
    0x198C00CD5ULL, 0x198C00CD6ULL, 0x199400CD5ULL, 0x1A8C00D3EULL, 0x1A8C00D57ULL, 0x1A8E00D3EULL,
    0x1BB200DCAULL, 0x1BB200DCFULL, 0x1BB200DDFULL, 0x1BB800DCAULL, 0x204A0102EULL, 0x360A01B35ULL,
    0x360E01B35ULL, 0x361201B35ULL, 0x361601B35ULL, 0x361A01B35ULL, 0x362201B35ULL, 0x367401B35ULL,
    0x367801B35ULL, 0x367C01B35ULL, 0x367E01B35ULL, 0x368401B35ULL, 0x3C6C00304ULL, 0x3C6E00304ULL,
    0x3CB400304ULL, 0x3CB600304ULL, 0x3CC400307ULL, 0x3CC600307ULL, 0x3D4000302ULL, 0x3D4000306ULL,
    0x3D4200302ULL, 0x3D4200306ULL, 0x3D7000302ULL, 0x3D7200302ULL, 0x3D9800302ULL, 0x3D9A00302ULL,
    0x3E0000300ULL, 0x3E0000301ULL, 0x3E0000342ULL, 0x3E0000345ULL, 0x3E0200300ULL, 0x3E0200301ULL,
    0x3E0200342ULL, 0x3E0200345ULL, 0x3E0400345ULL, 0x3E0600345ULL, 0x3E0800345ULL, 0x3E0A00345ULL,
    0x3E0C00345ULL, 0x3E0E00345ULL, 0x3E1000300ULL, 0x3E1000301ULL, 0x3E1000342ULL, 0x3E1000345ULL,
    0x3E1200300ULL, 0x3E1200301ULL, 0x3E1200342ULL, 0x3E1200345ULL, 0x3E1400345ULL, 0x3E1600345ULL,
    0x3E1800345ULL, 0x3E1A00345ULL, 0x3E1C00345ULL, 0x3E1E00345ULL, 0x3E2000300ULL, 0x3E2000301ULL,
    0x3E2200300ULL, 0x3E2200301ULL, 0x3E3000300ULL, 0x3E3000301ULL, 0x3E3200300ULL, 0x3E3200301ULL,
    0x3E4000300ULL, 0x3E4000301ULL, 0x3E4000342ULL, 0x3E4000345ULL, 0x3E4200300ULL, 0x3E4200301ULL,
    0x3E4200342ULL, 0x3E4200345ULL, 0x3E4400345ULL, 0x3E4600345ULL, 0x3E4800345ULL, 0x3E4A00345ULL,
    0x3E4C00345ULL, 0x3E4E00345ULL, 0x3E5000300ULL, 0x3E5000301ULL, 0x3E5000342ULL, 0x3E5000345ULL,
    0x3E5200300ULL, 0x3E5200301ULL, 0x3E5200342ULL, 0x3E5200345ULL, 0x3E5400345ULL, 0x3E5600345ULL,
    0x3E5800345ULL, 0x3E5A00345ULL, 0x3E5C00345ULL, 0x3E5E00345ULL, 0x3E6000300ULL, 0x3E6000301ULL,
    0x3E6000342ULL, 0x3E6200300ULL, 0x3E6200301ULL, 0x3E6200342ULL, 0x3E7000300ULL, 0x3E7000301ULL,
    0x3E7000342ULL, 0x3E7200300ULL, 0x3E7200301ULL, 0x3E7200342ULL, 0x3E8000300ULL, 0x3E8000301ULL,
    0x3E8200300ULL, 0x3E8200301ULL, 0x3E9000300ULL, 0x3E9000301ULL, 0x3E9200300ULL, 0x3E9200301ULL,
    0x3EA000300ULL, 0x3EA000301ULL, 0x3EA000342ULL, 0x3EA200300ULL, 0x3EA200301ULL, 0x3EA200342ULL,
    0x3EB200300ULL, 0x3EB200301ULL, 0x3EB200342ULL, 0x3EC000300ULL, 0x3EC000301ULL, 0x3EC000342ULL,
    0x3EC000345ULL, 0x3EC200300ULL, 0x3EC200301ULL, 0x3EC200342ULL, 0x3EC200345ULL, 0x3EC400345ULL,
    0x3EC600345ULL, 0x3EC800345ULL, 0x3ECA00345ULL, 0x3ECC00345ULL, 0x3ECE00345ULL, 0x3ED000300ULL,
    0x3ED000301ULL, 0x3ED000342ULL, 0x3ED000345ULL, 0x3ED200300ULL, 0x3ED200301ULL, 0x3ED200342ULL,
    0x3ED200345ULL, 0x3ED400345ULL, 0x3ED600345ULL, 0x3ED800345ULL, 0x3EDA00345ULL, 0x3EDC00345ULL,
    0x3EDE00345ULL, 0x3EE000345ULL, 0x3EE800345ULL, 0x3EF800345ULL, 0x3F6C00345ULL, 0x3F7E00300ULL,
    0x3F7E00301ULL, 0x3F7E00342ULL, 0x3F8C00345ULL, 0x3FEC00345ULL, 0x3FFC00300ULL, 0x3FFC00301ULL,
    0x3FFC00342ULL, 0x432000338ULL, 0x432400338ULL, 0x432800338ULL, 0x43A000338ULL, 0x43A400338ULL,
    0x43A800338ULL, 0x440600338ULL, 0x441000338ULL, 0x441600338ULL, 0x444600338ULL, 0x444A00338ULL,
    0x447800338ULL, 0x448600338ULL, 0x448A00338ULL, 0x449000338ULL, 0x449A00338ULL, 0x44C200338ULL,
    0x44C800338ULL, 0x44CA00338ULL, 0x44E400338ULL, 0x44E600338ULL, 0x44EC00338ULL, 0x44EE00338ULL,
    0x44F400338ULL, 0x44F600338ULL, 0x44F800338ULL, 0x44FA00338ULL, 0x450400338ULL, 0x450600338ULL,
    0x450C00338ULL, 0x450E00338ULL, 0x452200338ULL, 0x452400338ULL, 0x454400338ULL, 0x455000338ULL,
    0x455200338ULL, 0x455600338ULL, 0x456400338ULL, 0x456600338ULL, 0x456800338ULL, 0x456A00338ULL,
    0x608C03099ULL, 0x609603099ULL, 0x609A03099ULL, 0x609E03099ULL, 0x60A203099ULL, 0x60A603099ULL,
    0x60AA03099ULL, 0x60AE03099ULL, 0x60B203099ULL, 0x60B603099ULL, 0x60BA03099ULL, 0x60BE03099ULL,
    0x60C203099ULL, 0x60C803099ULL, 0x60CC03099ULL, 0x60D003099ULL, 0x60DE03099ULL, 0x60DE0309AULL,
    0x60E403099ULL, 0x60E40309AULL, 0x60EA03099ULL, 0x60EA0309AULL, 0x60F003099ULL, 0x60F00309AULL,
    0x60F603099ULL, 0x60F60309AULL, 0x613A03099ULL, 0x614C03099ULL, 0x615603099ULL, 0x615A03099ULL,
    0x615E03099ULL, 0x616203099ULL, 0x616603099ULL, 0x616A03099ULL, 0x616E03099ULL, 0x617203099ULL,
    0x617603099ULL, 0x617A03099ULL, 0x617E03099ULL, 0x618203099ULL, 0x618803099ULL, 0x618C03099ULL,
    0x619003099ULL, 0x619E03099ULL, 0x619E0309AULL, 0x61A403099ULL, 0x61A40309AULL, 0x61AA03099ULL,
    0x61AA0309AULL, 0x61B003099ULL, 0x61B00309AULL, 0x61B603099ULL, 0x61B60309AULL, 0x61DE03099ULL,
    0x61E003099ULL, 0x61E203099ULL, 0x61E403099ULL, 0x61FA03099ULL, 0x22132110BAULL,
    0x22136110BAULL, 0x2214A110BAULL, 0x2226211127ULL, 0x2226411127ULL, 0x2268E1133EULL,
    0x2268E11357ULL, 0x22972114B0ULL, 0x22972114BAULL, 0x22972114BDULL, 0x22B70115AFULL,
    0x22B72115AFULL, 0x2326A11930ULL,
};
static const uint32_t uc_comp_result[941] = {
    0x226E, 0x2260, 0x226F, 0xC0, 0xC1, 0xC2, 0xC3, 0x100, 0x102, 0x226, 0xC4, 0x1EA2, 0xC5, 0x1CD,
    0x200, 0x202, 0x1EA0, 0x1E00, 0x104, 0x1E02, 0x1E04, 0x1E06, 0x106, 0x108, 0x10A, 0x10C, 0xC7,
    0x1E0A, 0x10E, 0x1E0C, 0x1E10, 0x1E12, 0x1E0E, 0xC8, 0xC9, 0xCA, 0x1EBC, 0x112, 0x114, 0x116,
    0xCB, 0x1EBA, 0x11A, 0x204, 0x206, 0x1EB8, 0x228, 0x118, 0x1E18, 0x1E1A, 0x1E1E, 0x1F4, 0x11C,
    0x1E20, 0x11E, 0x120, 0x1E6, 0x122, 0x124, 0x1E22, 0x1E26, 0x21E, 0x1E24, 0x1E28, 0x1E2A, 0xCC,
    0xCD, 0xCE, 0x128, 0x12A, 0x12C, 0x130, 0xCF, 0x1EC8, 0x1CF, 0x208, 0x20A, 0x1ECA, 0x12E,
    0x1E2C, 0x134, 0x1E30, 0x1E8, 0x1E32, 0x136, 0x1E34, 0x139, 0x13D, 0x1E36, 0x13B, 0x1E3C,
    0x1E3A, 0x1E3E, 0x1E40, 0x1E42, 0x1F8, 0x143, 0xD1, 0x1E44, 0x147, 0x1E46, 0x145, 0x1E4A,
    0x1E48, 0xD2, 0xD3, 0xD4, 0xD5, 0x14C, 0x14E, 0x22E, 0xD6, 0x1ECE, 0x150, 0x1D1, 0x20C, 0x20E,
    0x1A0, 0x1ECC, 0x1EA, 0x1E54, 0x1E56, 0x154, 0x1E58, 0x158, 0x210, 0x212, 0x1E5A, 0x156, 0x1E5E,
    0x15A, 0x15C, 0x1E60, 0x160, 0x1E62, 0x218, 0x15E, 0x1E6A, 0x164, 0x1E6C, 0x21A, 0x162, 0x1E70,
    0x1E6E, 0xD9, 0xDA, 0xDB, 0x168, 0x16A, 0x16C, 0xDC, 0x1EE6, 0x16E, 0x170, 0x1D3, 0x214, 0x216,
    0x1AF, 0x1EE4, 0x1E72, 0x172, 0x1E76, 0x1E74, 0x1E7C, 0x1E7E, 0x1E80, 0x1E82, 0x174, 0x1E86,
    0x1E84, 0x1E88, 0x1E8A, 0x1E8C, 0x1EF2, 0xDD, 0x176, 0x1EF8, 0x232, 0x1E8E, 0x178, 0x1EF6,
    0x1EF4, 0x179, 0x1E90, 0x17B, 0x17D, 0x1E92, 0x1E94, 0xE0, 0xE1, 0xE2, 0xE3, 0x101, 0x103,
    0x227, 0xE4, 0x1EA3, 0xE5, 0x1CE, 0x201, 0x203, 0x1EA1, 0x1E01, 0x105, 0x1E03, 0x1E05, 0x1E07,
    0x107, 0x109, 0x10B, 0x10D, 0xE7, 0x1E0B, 0x10F, 0x1E0D, 0x1E11, 0x1E13, 0x1E0F, 0xE8, 0xE9,
    0xEA, 0x1EBD, 0x113, 0x115, 0x117, 0xEB, 0x1EBB, 0x11B, 0x205, 0x207, 0x1EB9, 0x229, 0x119,
    0x1E19, 0x1E1B, 0x1E1F, 0x1F5, 0x11D, 0x1E21, 0x11F, 0x121, 0x1E7, 0x123, 0x125, 0x1E23, 0x1E27,
    0x21F, 0x1E25, 0x1E29, 0x1E2B, 0x1E96, 0xEC, 0xED, 0xEE, 0x129, 0x12B, 0x12D, 0xEF, 0x1EC9,
    0x1D0, 0x209, 0x20B, 0x1ECB, 0x12F, 0x1E2D, 0x135, 0x1F0, 0x1E31, 0x1E9, 0x1E33, 0x137, 0x1E35,
    0x13A, 0x13E, 0x1E37, 0x13C, 0x1E3D, 0x1E3B, 0x1E3F, 0x1E41, 0x1E43, 0x1F9, 0x144, 0xF1, 0x1E45,
    0x148, 0x1E47, 0x146, 0x1E4B, 0x1E49, 0xF2, 0xF3, 0xF4, 0xF5, 0x14D, 0x14F, 0x22F, 0xF6, 0x1ECF,
    0x151, 0x1D2, 0x20D, 0x20F, 0x1A1, 0x1ECD, 0x1EB, 0x1E55, 0x1E57, 0x155, 0x1E59, 0x159, 0x211,
    0x213, 0x1E5B, 0x157, 0x1E5F, 0x15B, 0x15D, 0x1E61, 0x161, 0x1E63, 0x219, 0x15F, 0x1E6B, 0x1E97,
    0x165, 0x1E6D, 0x21B, 0x163, 0x1E71, 0x1E6F, 0xF9, 0xFA, 0xFB, 0x169, 0x16B, 0x16D, 0xFC,
    0x1EE7, 0x16F, 0x171, 0x1D4, 0x215, 0x217, 0x1B0, 0x1EE5, 0x1E73, 0x173, 0x1E77, 0x1E75, 0x1E7D,
    0x1E7F, 0x1E81, 0x1E83, 0x175, 0x1E87, 0x1E85, 0x1E98, 0x1E89, 0x1E8B, 0x1E8D, 0x1EF3, 0xFD,
    0x177, 0x1EF9, 0x233, 0x1E8F, 0xFF, 0x1EF7, 0x1E99, 0x1EF5, 0x17A, 0x1E91, 0x17C, 0x17E, 0x1E93,
    0x1E95, 0x1FED, 0x385, 0x1FC1, 0x1EA6, 0x1EA4, 0x1EAA, 0x1EA8, 0x1DE, 0x1FA, 0x1FC, 0x1E2,
    0x1E08, 0x1EC0, 0x1EBE, 0x1EC4, 0x1EC2, 0x1E2E, 0x1ED2, 0x1ED0, 0x1ED6, 0x1ED4, 0x1E4C, 0x22C,
    0x1E4E, 0x22A, 0x1FE, 0x1DB, 0x1D7, 0x1D5, 0x1D9, 0x1EA7, 0x1EA5, 0x1EAB, 0x1EA9, 0x1DF, 0x1FB,
    0x1FD, 0x1E3, 0x1E09, 0x1EC1, 0x1EBF, 0x1EC5, 0x1EC3, 0x1E2F, 0x1ED3, 0x1ED1, 0x1ED7, 0x1ED5,
    0x1E4D, 0x22D, 0x1E4F, 0x22B, 0x1FF, 0x1DC, 0x1D8, 0x1D6, 0x1DA, 0x1EB0, 0x1EAE, 0x1EB4, 0x1EB2,
    0x1EB1, 0x1EAF, 0x1EB5, 0x1EB3, 0x1E14, 0x1E16, 0x1E15, 0x1E17, 0x1E50, 0x1E52, 0x1E51, 0x1E53,
    0x1E64, 0x1E65, 0x1E66, 0x1E67, 0x1E78, 0x1E79, 0x1E7A, 0x1E7B, 0x1E9B, 0x1EDC, 0x1EDA, 0x1EE0,
    0x1EDE, 0x1EE2, 0x1EDD, 0x1EDB, 0x1EE1, 0x1EDF, 0x1EE3, 0x1EEA, 0x1EE8, 0x1EEE, 0x1EEC, 0x1EF0,
    0x1EEB, 0x1EE9, 0x1EEF, 0x1EED, 0x1EF1, 0x1EE, 0x1EC, 0x1ED, 0x1E0, 0x1E1, 0x1E1C, 0x1E1D,
    0x230, 0x231, 0x1EF, 0x1FBA, 0x386, 0x1FB9, 0x1FB8, 0x1F08, 0x1F09, 0x1FBC, 0x1FC8, 0x388,
    0x1F18, 0x1F19, 0x1FCA, 0x389, 0x1F28, 0x1F29, 0x1FCC, 0x1FDA, 0x38A, 0x1FD9, 0x1FD8, 0x3AA,
    0x1F38, 0x1F39, 0x1FF8, 0x38C, 0x1F48, 0x1F49, 0x1FEC, 0x1FEA, 0x38E, 0x1FE9, 0x1FE8, 0x3AB,
    0x1F59, 0x1FFA, 0x38F, 0x1F68, 0x1F69, 0x1FFC, 0x1FB4, 0x1FC4, 0x1F70, 0x3AC, 0x1FB1, 0x1FB0,
    0x1F00, 0x1F01, 0x1FB6, 0x1FB3, 0x1F72, 0x3AD, 0x1F10, 0x1F11, 0x1F74, 0x3AE, 0x1F20, 0x1F21,
    0x1FC6, 0x1FC3, 0x1F76, 0x3AF, 0x1FD1, 0x1FD0, 0x3CA, 0x1F30, 0x1F31, 0x1FD6, 0x1F78, 0x3CC,
    0x1F40, 0x1F41, 0x1FE4, 0x1FE5, 0x1F7A, 0x3CD, 0x1FE1, 0x1FE0, 0x3CB, 0x1F50, 0x1F51, 0x1FE6,
    0x1F7C, 0x3CE, 0x1F60, 0x1F61, 0x1FF6, 0x1FF3, 0x1FD2, 0x390, 0x1FD7, 0x1FE2, 0x3B0, 0x1FE7,
    0x1FF4, 0x3D3, 0x3D4, 0x407, 0x4D0, 0x4D2, 0x403, 0x400, 0x4D6, 0x401, 0x4C1, 0x4DC, 0x4DE,
    0x40D, 0x4E2, 0x419, 0x4E4, 0x40C, 0x4E6, 0x4EE, 0x40E, 0x4F0, 0x4F2, 0x4F4, 0x4F8, 0x4EC,
    0x4D1, 0x4D3, 0x453, 0x450, 0x4D7, 0x451, 0x4C2, 0x4DD, 0x4DF, 0x45D, 0x4E3, 0x439, 0x4E5,
    0x45C, 0x4E7, 0x4EF, 0x45E, 0x4F1, 0x4F3, 0x4F5, 0x4F9, 0x4ED, 0x457, 0x476, 0x477, 0x4DA,
    0x4DB, 0x4EA, 0x4EB, 0x622, 0x623, 0x625, 0x624, 0x626, 0x6C2, 0x6D3, 0x6C0, 0x929, 0x931,
    0x934, 0x9CB, 0x9CC, 0xB4B, 0xB48, 0xB4C, 0xB94, 0xBCA, 0xBCC, 0xBCB, 0xC48, 0xCC0, 0xCCA,
    0xCC7, 0xCC8, 0xCCB, 0xD4A, 0xD4C, 0xD4B, 0xDDA, 0xDDC, 0xDDE, 0xDDD, 0x1026, 0x1B06, 0x1B08,
    0x1B0A, 0x1B0C, 0x1B0E, 0x1B12, 0x1B3B, 0x1B3D, 0x1B40, 0x1B41, 0x1B43, 0x1E38, 0x1E39, 0x1E5C,
    0x1E5D, 0x1E68, 0x1E69, 0x1EAC, 0x1EB6, 0x1EAD, 0x1EB7, 0x1EC6, 0x1EC7, 0x1ED8, 0x1ED9, 0x1F02,
    0x1F04, 0x1F06, 0x1F80, 0x1F03, 0x1F05, 0x1F07, 0x1F81, 0x1F82, 0x1F83, 0x1F84, 0x1F85, 0x1F86,
    0x1F87, 0x1F0A, 0x1F0C, 0x1F0E, 0x1F88, 0x1F0B, 0x1F0D, 0x1F0F, 0x1F89, 0x1F8A, 0x1F8B, 0x1F8C,
    0x1F8D, 0x1F8E, 0x1F8F, 0x1F12, 0x1F14, 0x1F13, 0x1F15, 0x1F1A, 0x1F1C, 0x1F1B, 0x1F1D, 0x1F22,
    0x1F24, 0x1F26, 0x1F90, 0x1F23, 0x1F25, 0x1F27, 0x1F91, 0x1F92, 0x1F93, 0x1F94, 0x1F95, 0x1F96,
    0x1F97, 0x1F2A, 0x1F2C, 0x1F2E, 0x1F98, 0x1F2B, 0x1F2D, 0x1F2F, 0x1F99, 0x1F9A, 0x1F9B, 0x1F9C,
    0x1F9D, 0x1F9E, 0x1F9F, 0x1F32, 0x1F34, 0x1F36, 0x1F33, 0x1F35, 0x1F37, 0x1F3A, 0x1F3C, 0x1F3E,
    0x1F3B, 0x1F3D, 0x1F3F, 0x1F42, 0x1F44, 0x1F43, 0x1F45, 0x1F4A, 0x1F4C, 0x1F4B, 0x1F4D, 0x1F52,
    0x1F54, 0x1F56, 0x1F53, 0x1F55, 0x1F57, 0x1F5B, 0x1F5D, 0x1F5F, 0x1F62, 0x1F64, 0x1F66, 0x1FA0,
    0x1F63, 0x1F65, 0x1F67, 0x1FA1, 0x1FA2, 0x1FA3, 0x1FA4, 0x1FA5, 0x1FA6, 0x1FA7, 0x1F6A, 0x1F6C,
    0x1F6E, 0x1FA8, 0x1F6B, 0x1F6D, 0x1F6F, 0x1FA9, 0x1FAA, 0x1FAB, 0x1FAC, 0x1FAD, 0x1FAE, 0x1FAF,
    0x1FB2, 0x1FC2, 0x1FF2, 0x1FB7, 0x1FCD, 0x1FCE, 0x1FCF, 0x1FC7, 0x1FF7, 0x1FDD, 0x1FDE, 0x1FDF,
    0x219A, 0x219B, 0x21AE, 0x21CD, 0x21CF, 0x21CE, 0x2204, 0x2209, 0x220C, 0x2224, 0x2226, 0x2241,
    0x2244, 0x2247, 0x2249, 0x226D, 0x2262, 0x2270, 0x2271, 0x2274, 0x2275, 0x2278, 0x2279, 0x2280,
    0x2281, 0x22E0, 0x22E1, 0x2284, 0x2285, 0x2288, 0x2289, 0x22E2, 0x22E3, 0x22AC, 0x22AD, 0x22AE,
    0x22AF, 0x22EA, 0x22EB, 0x22EC, 0x22ED, 0x3094, 0x304C, 0x304E, 0x3050, 0x3052, 0x3054, 0x3056,
    0x3058, 0x305A, 0x305C, 0x305E, 0x3060, 0x3062, 0x3065, 0x3067, 0x3069, 0x3070, 0x3071, 0x3073,
    0x3074, 0x3076, 0x3077, 0x3079, 0x307A, 0x307C, 0x307D, 0x309E, 0x30F4, 0x30AC, 0x30AE, 0x30B0,
    0x30B2, 0x30B4, 0x30B6, 0x30B8, 0x30BA, 0x30BC, 0x30BE, 0x30C0, 0x30C2, 0x30C5, 0x30C7, 0x30C9,
    0x30D0, 0x30D1, 0x30D3, 0x30D4, 0x30D6, 0x30D7, 0x30D9, 0x30DA, 0x30DC, 0x30DD, 0x30F7, 0x30F8,
    0x30F9, 0x30FA, 0x30FE, 0x1109A, 0x1109C, 0x110AB, 0x1112E, 0x1112F, 0x1134B, 0x1134C, 0x114BC,
    0x114BB, 0x114BE, 0x115BA, 0x115BB, 0x11938,
};

static inline unsigned uc_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return uc_flags_stage2[((size_t)uc_flags_stage1[cp >> UC_FLAGS_SHIFT] << UC_FLAGS_SHIFT) |
                           (cp & ((1u << UC_FLAGS_SHIFT) - 1))];
}

static inline unsigned uc_ccc(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return uc_ccc_stage2[((size_t)uc_ccc_stage1[cp >> UC_CCC_SHIFT] << UC_CCC_SHIFT) |
                         (cp & ((1u << UC_CCC_SHIFT) - 1))];
}

/* <<< END GENERATED UNICODE TABLES <<< */
/* ================================================================================================
 * 4b. Tokenizer: BPE identical to Hugging Face tokenizers on tokenizer.json, two flavours.
 *
 * Both: the text is first split on added tokens (matched in the raw text, leftmost-longest; a token
 * with rstrip/lstrip also swallows the whitespace after/before it); each piece between them is then
 * encoded on its own, and merges apply by rank.
 * - bpe_byte_level (Qwen2): NFC, split by the Qwen2 pre-tokenizer regex (a hand-written scanner
 *   below), then BPE on each pre-token's raw bytes (every byte is an initial symbol).
 * - bpe_sentencepiece (Llama-2 / Phi-3): the normalizer Prepend("▁") + Replace(" " → "▁") runs on
 *   EACH non-empty piece (HF normalizes every split separately, so text right after an added token
 *   gets its own "▁" too: the "legacy" Llama behaviour); no pre-tokenizer, so the whole piece is one
 *   BPE word; its initial symbols are its characters, a character missing from the vocabulary falls
 *   back to its UTF-8 bytes as <0xNN> tokens.
 * The tables live in the weight file (model_convert/FORMAT.md, "Tokenizer tensors").
 * ================================================================================================ */

/* Provided by the public API section: the tokenizer of a loaded model. */
static const tokenizer *model_tokenizer(const abc_model *m);

#define TOK_NO_MERGE UINT32_MAX

/* (left, right) → (rank, merged) in an open-addressing table; rank TOK_NO_MERGE marks an empty slot. */
typedef struct {
    uint64_t key;    /* left << 32 | right */
    uint32_t rank;
    int32_t merged;
} merge_slot;

enum { ADDED_LSTRIP = 1, ADDED_RSTRIP = 2 };

typedef struct {
    const uint8_t *text;
    uint32_t len;
    int32_t id;
    int32_t strip; /* ADDED_LSTRIP | ADDED_RSTRIP */
} added_token;

enum { TOK_BYTE_LEVEL, TOK_SENTENCEPIECE };

#define SP_SPACE 0x2581u /* ▁, SentencePiece's visible space */

struct tokenizer {
    const uint8_t *vocab_bytes;   /* inside the weight file mapping */
    const int32_t *vocab_offsets; /* [n_vocab + 1] */
    int32_t n_vocab;
    int32_t byte_id[256];         /* the token of each single byte: BPE's initial symbols */
    merge_slot *merges;
    int merge_bits;               /* the table has 1 << merge_bits slots */
    size_t n_merges;
    added_token *added;           /* sorted by first byte, then longest first */
    size_t n_added;
    uint32_t added_first[257];    /* added[added_first[b] .. added_first[b+1]) start with byte b */
    bool nfc;
    int kind;                     /* TOK_BYTE_LEVEL or TOK_SENTENCEPIECE */
    int32_t bos_id;               /* added before every text by the post-processor, or -1 */
    /* SentencePiece: the single-character vocabulary tokens (BPE's initial symbols). */
    const int32_t *sp_chars;      /* [n_sp_chars][2] = (code point, id), sorted by code point */
    size_t n_sp_chars;
    int32_t sp_ascii[128];        /* the same for ASCII, -1 when absent */
    int32_t sp_space_id;          /* the token of "▁", or -1 */
    size_t max_token_len;         /* longest token in bytes, at least 4: no token covers more input */
    uint32_t byte_weight[256];    /* 65536 / (longest token holding byte b, at least 4), rounded down */
};

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if it is invalid: overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences and stray continuation bytes. */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;                 /* continuation byte, or overlong 2-byte lead */
    if (b < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (b < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (b == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (b == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (b > 0xF4) return 0;
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (b == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (b == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return 4;
}

/* Returns true if s[0..n) is valid UTF-8; otherwise *bad is the offset of the first bad byte. */
static bool utf8_validate(const uint8_t *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_valid_len(s + i, n - i);
        if (!k) { *bad = i; return false; }
        i += k;
    }
    return true;
}

/* Decodes one code point of already validated UTF-8. */
static inline uint32_t utf8_decode(const uint8_t *s, size_t *n) {
    uint8_t b = s[0];
    if (b < 0x80) { *n = 1; return b; }
    if (b < 0xE0) { *n = 2; return (uint32_t)(b & 0x1F) << 6 | (s[1] & 0x3F); }
    if (b < 0xF0) {
        *n = 3;
        return (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
}

static size_t utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- per-call scratch memory (the tokenizer itself is shared read-only) ---- */

typedef struct {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
} bpe_candidate;

typedef struct {
    uint32_t *cps;      /* NFC: code points */
    size_t cps_len, cps_cap;
    uint32_t *sort_tmp; /* NFC: canonical ordering of long runs */
    size_t sort_cap;
    uint8_t *nfc;       /* NFC: the normalized UTF-8 */
    size_t nfc_cap;
    int32_t *sym, *prev, *next; /* BPE: symbols as a doubly linked list */
    size_t sym_cap;
    bpe_candidate *heap;
    size_t heap_len, heap_cap;
} encode_scratch;

static void encode_scratch_free(encode_scratch *s) {
    free(s->cps);
    free(s->sort_tmp);
    free(s->nfc);
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->heap);
}

/* Grows *buf to hold at least `need` elements of `elem` bytes. */
static bool grow_buffer(void **buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 256, bytes;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2) return false;
        cap2 *= 2;
    }
    if (!mul_size(cap2, elem, &bytes)) return false;
    void *p = xrealloc(*buf, bytes);
    if (!p) return false;
    *buf = p;
    *cap = cap2;
    return true;
}

/* ---- NFC (Unicode Standard Annex #15) ---- */

enum {
    HANGUL_S_BASE = 0xAC00, HANGUL_L_BASE = 0x1100, HANGUL_V_BASE = 0x1161, HANGUL_T_BASE = 0x11A7,
    HANGUL_L_COUNT = 19, HANGUL_V_COUNT = 21, HANGUL_T_COUNT = 28,
    HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT, HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT
};

/* True when s[0..n) is certainly in NFC already (the NFC_Quick_Check algorithm, Maybe → false). */
static bool nfc_quick_check(const uint8_t *s, size_t n) {
    unsigned last_ccc = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            last_ccc = 0;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp = utf8_decode(s + i, &k);
        i += k;
        if (uc_flags(cp) & UC_NFC_CHECK) return false;
        unsigned ccc = uc_ccc(cp);
        if (ccc && last_ccc > ccc) return false;
        last_ccc = ccc;
    }
    return true;
}

static bool cps_push(encode_scratch *s, uint32_t cp) {
    if (s->cps_len == s->cps_cap && !grow_buffer((void **)&s->cps, &s->cps_cap, s->cps_len + 1, sizeof *s->cps))
        return false;
    s->cps[s->cps_len++] = cp;
    return true;
}

/* Appends the full canonical decomposition of cp. */
static bool decompose_push(encode_scratch *s, uint32_t cp) {
    if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
        uint32_t i = cp - HANGUL_S_BASE, t = i % HANGUL_T_COUNT;
        if (!cps_push(s, HANGUL_L_BASE + i / HANGUL_N_COUNT)) return false;
        if (!cps_push(s, HANGUL_V_BASE + i % HANGUL_N_COUNT / HANGUL_T_COUNT)) return false;
        return t == 0 || cps_push(s, HANGUL_T_BASE + t);
    }
    size_t lo = 0, hi = UC_DECOMP_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_decomp_cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < UC_DECOMP_COUNT && uc_decomp_cp[lo] == cp) {
        for (unsigned j = uc_decomp_start[lo]; j < uc_decomp_start[lo + 1]; j++)
            if (!cps_push(s, uc_decomp_seq[j])) return false;
        return true;
    }
    return cps_push(s, cp);
}

/* Stable sort of a run of non-starters by combining class. Short runs (the norm) use insertion
 * sort; long ones a counting sort, so a megabyte of stacked marks stays linear. */
static bool canonical_order_run(encode_scratch *s, uint32_t *run, size_t n) {
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t cp = run[i];
            unsigned ccc = uc_ccc(cp);
            size_t j = i;
            while (j > 0 && uc_ccc(run[j - 1]) > ccc) {
                run[j] = run[j - 1];
                j--;
            }
            run[j] = cp;
        }
        return true;
    }
    if (!grow_buffer((void **)&s->sort_tmp, &s->sort_cap, n, sizeof *s->sort_tmp)) return false;
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[uc_ccc(run[i]) + 1]++;
    for (int c = 0; c < 256; c++) start[c + 1] += start[c];
    for (size_t i = 0; i < n; i++) s->sort_tmp[start[uc_ccc(run[i])]++] = run[i];
    memcpy(run, s->sort_tmp, n * sizeof *run);
    return true;
}

/* The primary composite of (a, b), or 0 if there is none. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
        b < HANGUL_V_BASE + HANGUL_V_COUNT)
        return HANGUL_S_BASE + ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT && (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 &&
        b > HANGUL_T_BASE && b < HANGUL_T_BASE + HANGUL_T_COUNT)
        return a + (b - HANGUL_T_BASE);
    uint64_t key = (uint64_t)a << 21 | b;
    size_t lo = 0, hi = UC_COMP_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_comp_pair[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < UC_COMP_COUNT && uc_comp_pair[lo] == key ? uc_comp_result[lo] : 0;
}

/* Canonical composition of s->cps in place. */
static void compose_in_place(encode_scratch *s) {
    uint32_t *c = s->cps;
    size_t out = 0, starter = SIZE_MAX;
    unsigned last_ccc = 0;
    for (size_t i = 0; i < s->cps_len; i++) {
        uint32_t cp = c[i];
        unsigned ccc = uc_ccc(cp);
        /* cp may join the last starter unless a character of the same or higher class sits between. */
        if (starter != SIZE_MAX && (last_ccc < ccc || last_ccc == 0)) {
            uint32_t composite = compose_pair(c[starter], cp);
            if (composite) {
                c[starter] = composite;
                continue;
            }
        }
        if (ccc == 0) starter = out;
        last_ccc = ccc;
        c[out++] = cp;
    }
    s->cps_len = out;
}

/* NFC of text[0..n) (valid UTF-8) into s->nfc; *out_len is its length. */
static bool nfc_normalize(encode_scratch *s, const uint8_t *text, size_t n, size_t *out_len) {
    s->cps_len = 0;
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = utf8_decode(text + i, &k);
        i += k;
        if (!decompose_push(s, cp)) return false;
    }
    for (size_t i = 0; i < s->cps_len;) {
        if (uc_ccc(s->cps[i]) == 0) { i++; continue; }
        size_t j = i;
        while (j < s->cps_len && uc_ccc(s->cps[j]) != 0) j++;
        if (!canonical_order_run(s, s->cps + i, j - i)) return false;
        i = j;
    }
    compose_in_place(s);
    size_t need;
    if (!mul_size(s->cps_len, 4, &need) || !grow_buffer((void **)&s->nfc, &s->nfc_cap, need, 1)) return false;
    size_t len = 0;
    for (size_t i = 0; i < s->cps_len; i++) len += utf8_encode(s->cps[i], s->nfc + len);
    *out_len = len;
    return true;
}

/* ---- pre-tokenizer: the Qwen2 split regex, by hand ----
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Every character starts some alternative, so the matches tile the text; at each position the first
 * alternative that matches (with backtracking) wins, as in Oniguruma, the engine of HF tokenizers. */

enum { CH_OTHER, CH_LETTER, CH_NUMBER, CH_SPACE, CH_NEWLINE };

static inline int char_class(const uint8_t *s, size_t *n) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *n = 1;
        if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') return CH_LETTER;
        if (b >= '0' && b <= '9') return CH_NUMBER;
        if (b == '\n' || b == '\r') return CH_NEWLINE;
        if (b == ' ' || (b >= '\t' && b <= '\f')) return CH_SPACE;
        return CH_OTHER;
    }
    unsigned f = uc_flags(utf8_decode(s, n));
    if (f & UC_LETTER) return CH_LETTER;
    if (f & UC_NUMBER) return CH_NUMBER;
    if (f & UC_SPACE) return CH_SPACE;
    return CH_OTHER;
}

static inline bool ascii_ci(uint8_t b, char lower) { return (b | 0x20) == lower; }

/* Length of the contraction after an apostrophe at s[0..n): 's 't 're 've 'm 'll 'd, any case.
 * (?i) uses Unicode case folding, so 's also matches U+017F LATIN SMALL LETTER LONG S. */
static size_t contraction_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t b = s[0];
    if (ascii_ci(b, 's') || ascii_ci(b, 't') || ascii_ci(b, 'm') || ascii_ci(b, 'd')) return 1;
    if (n >= 2 && ascii_ci(b, 'r') && ascii_ci(s[1], 'e')) return 2;
    if (n >= 2 && ascii_ci(b, 'v') && ascii_ci(s[1], 'e')) return 2;
    if (n >= 2 && ascii_ci(b, 'l') && ascii_ci(s[1], 'l')) return 2;
    if (n >= 2 && b == 0xC5 && s[1] == 0xBF) return 2; /* U+017F ſ */
    return 0;
}

static size_t run_of_class(const uint8_t *s, size_t pos, size_t end, int cls) {
    while (pos < end) {
        size_t k;
        if (char_class(s + pos, &k) != cls) break;
        pos += k;
    }
    return pos;
}

/* End of the pre-token that starts at pos (< end). */
static size_t pretoken_end(const uint8_t *s, size_t pos, size_t end) {
    size_t n0, k;
    int c0 = char_class(s + pos, &n0);
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (s[pos] == '\'') {
        size_t m = contraction_len(s + pos + 1, end - pos - 1);
        if (m) return pos + 1 + m;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 == CH_LETTER) return run_of_class(s, pos, end, CH_LETTER);
    if (c0 != CH_NEWLINE && c0 != CH_NUMBER && pos + n0 < end && char_class(s + pos + n0, &k) == CH_LETTER)
        return run_of_class(s, pos + n0, end, CH_LETTER);
    /* \p{N} */
    if (c0 == CH_NUMBER) return pos + n0;
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t p = pos + (s[pos] == ' ');
    if (p < end && char_class(s + p, &k) == CH_OTHER) {
        p = run_of_class(s, p, end, CH_OTHER);
        while (p < end && (s[p] == '\r' || s[p] == '\n')) p++;
        return p;
    }
    /* Only whitespace is left. \s*[\r\n]+ ends after the run's last line break; \s+(?!\S) takes the
     * run up to the end of the text, or all but its last character; \s+ takes a single character. */
    size_t last_break_end = 0, last_start = pos;
    p = pos;
    while (p < end) {
        int c = char_class(s + p, &k);
        if (c != CH_SPACE && c != CH_NEWLINE) break;
        if (c == CH_NEWLINE) last_break_end = p + k;
        last_start = p;
        p += k;
    }
    if (last_break_end) return last_break_end;
    if (p == end || last_start == pos) return p;
    return last_start;
}

/* ---- BPE ---- */

static inline size_t merge_hash(uint64_t key, int bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static const merge_slot *merge_find(const tokenizer *tok, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = ((size_t)1 << tok->merge_bits) - 1;
    for (size_t h = merge_hash(key, tok->merge_bits);; h = (h + 1) & mask) {
        const merge_slot *slot = &tok->merges[h];
        if (slot->rank == TOK_NO_MERGE) return NULL;
        if (slot->key == key) return slot;
    }
}

static inline bool candidate_before(const bpe_candidate *a, const bpe_candidate *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(encode_scratch *s, bpe_candidate c) {
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(&c, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = c;
}

static bpe_candidate heap_pop(encode_scratch *s) {
    bpe_candidate top = s->heap[0], last = s->heap[--s->heap_len];
    size_t i = 0, n = s->heap_len;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && candidate_before(&s->heap[child + 1], &s->heap[child])) child++;
        if (!candidate_before(&s->heap[child], &last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    s->heap[i] = last;
    return top;
}

/* Queues the merge of the symbol at `pos` with its successor, if the pair has one. */
static void queue_pair(const tokenizer *tok, encode_scratch *s, int32_t pos) {
    int32_t nx = s->next[pos];
    if (nx < 0) return;
    const merge_slot *m = merge_find(tok, s->sym[pos], s->sym[nx]);
    if (m) heap_push(s, (bpe_candidate){m->rank, (uint32_t)pos, m->merged});
}

/* Room for a word of n initial symbols: the symbol list and the heap (n - 1 initial pairs plus at
 * most two new pairs per merge stay below 3n). */
static abc_status bpe_reserve(encode_scratch *s, size_t n, abc_error *err) {
    if (n > INT32_MAX / 3) return fail(err, ABC_ERR_TOO_LARGE, "a single word of %zu bytes is too long to tokenize", n);
    if (!grow_buffer((void **)&s->heap, &s->heap_cap, 3 * n, sizeof *s->heap)) goto nomem;
    if (n > s->sym_cap) {
        size_t cap = n + n / 2;
        int32_t *sym = xrealloc(s->sym, cap * sizeof *sym);
        if (sym) s->sym = sym;
        int32_t *prev = sym ? xrealloc(s->prev, cap * sizeof *prev) : NULL;
        if (prev) s->prev = prev;
        int32_t *next = prev ? xrealloc(s->next, cap * sizeof *next) : NULL;
        if (!next) goto nomem;
        s->next = next;
        s->sym_cap = cap;
    }
    return ABC_OK;
nomem:
    return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
}

/* BPE of one word whose n >= 1 initial symbols are in s->sym, as HF tokenizers' Word::merge_all:
 * repeatedly apply the lowest-ranked merge (leftmost among equals) using a heap of candidate pairs,
 * so long words cost O(n log n). Appends the resulting ids. */
static abc_status bpe_merge_symbols(const tokenizer *tok, encode_scratch *s, size_t n, int_vec *ids, abc_error *err) {
    for (size_t i = 0; i < n; i++) {
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++) queue_pair(tok, s, (int32_t)i);
    while (s->heap_len) {
        bpe_candidate top = heap_pop(s);
        int32_t pos = (int32_t)top.pos, nx = s->next[pos];
        if (s->sym[pos] < 0 || nx < 0) continue;
        /* Skip stale candidates: the pair at pos changed since it was queued. */
        const merge_slot *m = merge_find(tok, s->sym[pos], s->sym[nx]);
        if (!m || m->merged != top.merged) continue;
        s->sym[pos] = top.merged;
        s->sym[nx] = -1;
        s->next[pos] = s->next[nx];
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = pos;
        if (s->prev[pos] >= 0) queue_pair(tok, s, s->prev[pos]);
        queue_pair(tok, s, pos);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i])
        if (!int_vec_push(ids, s->sym[i])) return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
    return ABC_OK;
}

/* Refusing work beyond the token limit: a word that cannot fit is refused before its BPE (which costs
 * O(n log n)), and the count is checked again after each word (bytes = NULL, n_bytes = 0). The token
 * covering byte i of a word is at most longest(b_i) bytes long, so the word makes at least
 * Σ 1 / longest(b_i) tokens (n / max_token_len at the least; 10 MB of "a" cannot be 32768 tokens). */
static abc_status check_token_limit(const tokenizer *tok, size_t have, const uint8_t *bytes, size_t n_bytes,
                                    size_t max_ids, abc_error *err) {
    if (max_ids == SIZE_MAX) return ABC_OK;
    bool over = have > max_ids || n_bytes / tok->max_token_len > max_ids - have;
    if (!over && n_bytes >= 256) { /* shorter words are cheap to encode and checked after */
        const uint64_t room = (uint64_t)(max_ids - have) << 16;
        uint64_t weight = 0;
        for (size_t i = 0; i < n_bytes && weight <= room; i++) weight += tok->byte_weight[bytes[i]];
        over = weight > room;
    }
    if (over)
        return fail(err, ABC_ERR_TOO_LARGE, "the text has more than %zu tokens, the limit (tokenization stopped)", max_ids);
    return ABC_OK;
}

/* Byte-level BPE of one pre-token: every byte is an initial symbol. */
static abc_status bpe_encode(const tokenizer *tok, encode_scratch *s, const uint8_t *bytes, size_t n,
                             int_vec *ids, abc_error *err) {
    if (n == 1) {
        if (!int_vec_push(ids, tok->byte_id[bytes[0]])) return fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
        return ABC_OK;
    }
    abc_status st = bpe_reserve(s, n, err);
    if (st != ABC_OK) return st;
    for (size_t i = 0; i < n; i++) s->sym[i] = tok->byte_id[bytes[i]];
    return bpe_merge_symbols(tok, s, n, ids, err);
}

/* ---- SentencePiece BPE ---- */

/* The single-character token of code point cp, or -1. */
static int32_t sp_char_id(const tokenizer *tok, uint32_t cp) {
    if (cp < 128) return tok->sp_ascii[cp];
    if (cp == SP_SPACE) return tok->sp_space_id;
    size_t lo = 0, hi = tok->n_sp_chars;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)tok->sp_chars[2 * mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < tok->n_sp_chars && (uint32_t)tok->sp_chars[2 * lo] == cp ? tok->sp_chars[2 * lo + 1] : -1;
}

/* Appends the initial symbol(s) of character cp: its token, or its UTF-8 bytes' <0xNN> tokens. */
static size_t sp_push_char(const tokenizer *tok, encode_scratch *s, size_t n, uint32_t cp) {
    int32_t id = sp_char_id(tok, cp);
    if (id >= 0) {
        s->sym[n] = id;
        return n + 1;
    }
    uint8_t buf[4];
    size_t k = utf8_encode(cp, buf);
    for (size_t i = 0; i < k; i++) s->sym[n++] = tok->byte_id[buf[i]];
    return n;
}

/* Encodes one piece of valid UTF-8 text between added tokens: "▁" + the text with every space
 * replaced by "▁" (nothing for an empty piece), as one BPE word. */
static abc_status sp_encode_piece(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                                  size_t max_ids, int_vec *ids, abc_error *err) {
    if (n == 0) return ABC_OK;
    if (n > SIZE_MAX - 4) return fail(err, ABC_ERR_TOO_LARGE, "text too long");
    abc_status st = check_token_limit(tok, ids->len, text, n, max_ids, err);
    if (st != ABC_OK) return st;
    /* A character yields at most as many symbols as it has bytes; the leading "▁" at most 3. */
    st = bpe_reserve(s, n + 3, err);
    if (st != ABC_OK) return st;
    size_t n_sym = sp_push_char(tok, s, 0, SP_SPACE);
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = utf8_decode(text + i, &k);
        i += k;
        n_sym = sp_push_char(tok, s, n_sym, cp == ' ' ? SP_SPACE : cp);
    }
    st = bpe_merge_symbols(tok, s, n_sym, ids, err);
    return st == ABC_OK ? check_token_limit(tok, ids->len, NULL, 0, max_ids, err) : st;
}

/* Pre-tokenizes and encodes a piece of normalized text that holds no added token. */
static abc_status encode_piece(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                               size_t max_ids, int_vec *ids, abc_error *err) {
    for (size_t pos = 0; pos < n;) {
        size_t end = pretoken_end(text, pos, n);
        abc_status st = check_token_limit(tok, ids->len, text + pos, end - pos, max_ids, err);
        if (st == ABC_OK) st = bpe_encode(tok, s, text + pos, end - pos, ids, err);
        if (st != ABC_OK) return st;
        pos = end;
    }
    return check_token_limit(tok, ids->len, NULL, 0, max_ids, err);
}

static abc_status encode_segment(const tokenizer *tok, encode_scratch *s, const uint8_t *text, size_t n,
                                 size_t max_ids, int_vec *ids, abc_error *err) {
    if (n == 0) return ABC_OK;
    if (tok->kind == TOK_SENTENCEPIECE) return sp_encode_piece(tok, s, text, n, max_ids, ids, err);
    if (tok->nfc && !nfc_quick_check(text, n)) {
        size_t len;
        if (!nfc_normalize(s, text, n, &len)) return fail(err, ABC_ERR_NOMEM, "out of memory normalizing text");
        return encode_piece(tok, s, s->nfc, len, max_ids, ids, err);
    }
    return encode_piece(tok, s, text, n, max_ids, ids, err);
}

/* Rust's char::is_whitespace (the White_Space property), which HF uses to strip around added tokens. */
static bool is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* End of the whitespace run starting at pos (rstrip). */
static size_t white_space_end(const uint8_t *text, size_t pos, size_t end) {
    while (pos < end) {
        size_t k;
        if (!is_white_space(utf8_decode(text + pos, &k))) break;
        pos += k;
    }
    return pos;
}

/* Start of the whitespace run that ends at `end`, not before `from` (lstrip). */
static size_t white_space_start(const uint8_t *text, size_t from, size_t end) {
    size_t start = from;
    for (size_t pos = from; pos < end;) {
        size_t k;
        bool white = is_white_space(utf8_decode(text + pos, &k));
        pos += k;
        if (!white) start = pos;
    }
    return start;
}

/* The leftmost-longest added token at or after `pos`: returns its start (n when there is none). */
static size_t find_added_token(const tokenizer *tok, const uint8_t *text, size_t n, size_t pos,
                               const added_token **found) {
    for (; pos < n; pos++) {
        uint8_t b = text[pos];
        for (uint32_t i = tok->added_first[b]; i < tok->added_first[b + 1]; i++) {
            const added_token *a = &tok->added[i];
            if (a->len <= n - pos && !memcmp(text + pos, a->text, a->len)) {
                *found = a;
                return pos;
            }
        }
    }
    *found = NULL;
    return n;
}

static abc_status tokenizer_encode_max(const tokenizer *tok, const char *text, size_t len, size_t max_ids,
                                       int_vec *ids, abc_error *err) {
    if (!tok || !ids || (!text && len)) return fail(err, ABC_ERR_INVALID_ARG, "tokenize: NULL argument");
    const uint8_t *s = (const uint8_t *)text;
    size_t bad;
    if (!utf8_validate(s, len, &bad))
        return fail(err, ABC_ERR_UTF8, "text is not valid UTF-8 (byte 0x%02X at offset %zu)", s[bad], bad);
    size_t start_len = ids->len;
    encode_scratch scratch = {0};
    abc_status st = ABC_OK;
    /* As HF's AddedVocabulary::find_matches: `piece` is where the text not yet consumed starts. */
    for (size_t piece = 0; st == ABC_OK;) {
        const added_token *a;
        size_t at = find_added_token(tok, s, len, piece, &a);
        if (!a) {
            if (piece < len) st = encode_segment(tok, &scratch, s + piece, len - piece, max_ids, ids, err);
            break;
        }
        size_t start = a->strip & ADDED_LSTRIP ? white_space_start(s, piece, at) : at;
        size_t stop = at + a->len;
        if (a->strip & ADDED_RSTRIP) stop = white_space_end(s, stop, len);
        st = encode_segment(tok, &scratch, s + piece, start - piece, max_ids, ids, err);
        if (st == ABC_OK && !int_vec_push(ids, a->id)) st = fail(err, ABC_ERR_NOMEM, "out of memory tokenizing");
        if (st == ABC_OK) st = check_token_limit(tok, ids->len, NULL, 0, max_ids, err);
        piece = stop;
    }
    encode_scratch_free(&scratch);
    if (st != ABC_OK) ids->len = start_len;
    return st;
}

static abc_status tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int_vec *ids,
                                   abc_error *err) {
    return tokenizer_encode_max(tok, text, len, SIZE_MAX, ids, err);
}

static const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_vocab) return NULL;
    int32_t a = tok->vocab_offsets[id], b = tok->vocab_offsets[id + 1];
    if (a == b) return NULL;
    if (len) *len = (size_t)(b - a);
    return (const char *)tok->vocab_bytes + a;
}

/* ---- loading ---- */

static void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    free(tok->merges);
    free(tok->added);
    free(tok);
}

/* The tensor `name`, which must have the given dtype and rank. */
static abc_status tok_tensor(const weight_file *wf, const char *name, uint32_t dtype, int ndim, const tensor **out,
                             abc_error *err) {
    const tensor *t = wf_tensor(wf, name);
    if (!t) return fail(err, ABC_ERR_FORMAT, "weight file has no tensor '%s'", name);
    if (t->dtype != dtype || t->ndim != ndim)
        return fail(err, ABC_ERR_FORMAT, "tensor '%s' must be %s with %d dimension(s), not %s with %d", name,
                    dtype_name(dtype), ndim, dtype_name(t->dtype), t->ndim);
    if (dtype == DT_I32 && (uintptr_t)t->data % sizeof(int32_t))
        return fail(err, ABC_ERR_FORMAT, "tensor '%s' is misaligned", name);
    *out = t;
    return ABC_OK;
}

/* *index = position of the string metadata `key` among `choices` (an error if missing or another value). */
static abc_status tok_meta_choice(const weight_file *wf, const char *key, const char *const *choices, int n_choices,
                              int *index, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return ABC_ERR_FORMAT;
    for (int i = 0; i < n_choices; i++)
        if (len == strlen(choices[i]) && !memcmp(s, choices[i], len)) {
            *index = i;
            return ABC_OK;
        }
    return fail(err, ABC_ERR_UNSUPPORTED, "unsupported %s '%.*s'", key, (int)MIN(len, 64), s);
}

static abc_status load_vocab(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *bytes, *offs;
    abc_status st = tok_tensor(wf, "tokenizer.vocab.bytes", DT_U8, 1, &bytes, err);
    if (st == ABC_OK) st = tok_tensor(wf, "tokenizer.vocab.offsets", DT_I32, 1, &offs, err);
    if (st != ABC_OK) return st;
    if (offs->shape[0] < 2 || offs->shape[0] - 1 > INT32_MAX / 4)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets: bad length %lld", (long long)offs->shape[0]);
    if ((uint64_t)bytes->shape[0] > INT32_MAX)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.bytes: %lld bytes is too large", (long long)bytes->shape[0]);
    tok->n_vocab = (int32_t)(offs->shape[0] - 1);
    tok->vocab_offsets = offs->data;
    tok->vocab_bytes = bytes->data;
    const int32_t *o = tok->vocab_offsets;
    if (o[0] != 0 || o[tok->n_vocab] != (int32_t)bytes->shape[0])
        return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets must run from 0 to %lld", (long long)bytes->shape[0]);
    for (int32_t i = 0; i < tok->n_vocab; i++)
        if (o[i + 1] < o[i]) return fail(err, ABC_ERR_FORMAT, "tokenizer.vocab.offsets decreases at token %d", i);
    /* Only now are all offsets known to lie within the bytes (fuzz_model found a read before this check).
     * A token's stored bytes are the input bytes it covers (SentencePiece stores "▁" as a space and byte
     * fallbacks as the byte), so no token covering byte b is longer than the longest token holding b; a
     * character or its byte fallback covers at most 4. */
    uint32_t longest[256];
    for (int b = 0; b < 256; b++) longest[b] = 4;
    tok->max_token_len = 4;
    for (int32_t i = 0; i < tok->n_vocab; i++) {
        const uint32_t len = (uint32_t)(o[i + 1] - o[i]);
        tok->max_token_len = MAX(tok->max_token_len, (size_t)len);
        for (int32_t k = o[i]; k < o[i + 1]; k++) longest[tok->vocab_bytes[k]] = MAX(longest[tok->vocab_bytes[k]], len);
    }
    for (int b = 0; b < 256; b++) tok->byte_weight[b] = 65536u / longest[b];
    return ABC_OK;
}

/* BPE's initial symbols: the token of each single byte (the first such token if several). */
static abc_status find_byte_tokens(tokenizer *tok, abc_error *err) {
    for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
    for (int32_t i = tok->n_vocab - 1; i >= 0; i--)
        if (tok->vocab_offsets[i + 1] - tok->vocab_offsets[i] == 1)
            tok->byte_id[tok->vocab_bytes[tok->vocab_offsets[i]]] = i;
    for (int b = 0; b < 256; b++)
        if (tok->byte_id[b] < 0) return fail(err, ABC_ERR_FORMAT, "tokenizer vocabulary has no token for byte 0x%02X", b);
    return ABC_OK;
}

static abc_status load_merges(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.merges", DT_I32, 2, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[1] != 3 || t->shape[0] < 0 || t->shape[0] >= INT32_MAX / 4)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.merges must be [n, 3], not [%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
    size_t n = (size_t)t->shape[0];
    tok->n_merges = n;
    int bits = 4;
    while (((size_t)1 << bits) < 2 * n) bits++;
    tok->merge_bits = bits;
    tok->merges = xmalloc(((size_t)1 << bits) * sizeof *tok->merges);
    if (!tok->merges) return fail(err, ABC_ERR_NOMEM, "out of memory loading the tokenizer merges");
    for (size_t i = 0; i < ((size_t)1 << bits); i++) tok->merges[i].rank = TOK_NO_MERGE;
    const int32_t *m = t->data;
    const int32_t *o = tok->vocab_offsets;
    size_t mask = ((size_t)1 << bits) - 1;
    for (size_t r = 0; r < n; r++) {
        int32_t left = m[3 * r], right = m[3 * r + 1], merged = m[3 * r + 2];
        if (left < 0 || left >= tok->n_vocab || right < 0 || right >= tok->n_vocab || merged < 0 || merged >= tok->n_vocab)
            return fail(err, ABC_ERR_FORMAT, "tokenizer.merges row %zu: id out of range", r);
        int32_t ll = o[left + 1] - o[left], rl = o[right + 1] - o[right];
        if (!ll || !rl || o[merged + 1] - o[merged] != ll + rl ||
            memcmp(tok->vocab_bytes + o[merged], tok->vocab_bytes + o[left], (size_t)ll) ||
            memcmp(tok->vocab_bytes + o[merged] + ll, tok->vocab_bytes + o[right], (size_t)rl))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.merges row %zu: token %d is not token %d + token %d", r, merged, left, right);
        /* A pair listed twice keeps its last rank, as HF tokenizers' merge map does. */
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        size_t h = merge_hash(key, bits);
        while (tok->merges[h].rank != TOK_NO_MERGE && tok->merges[h].key != key) h = (h + 1) & mask;
        tok->merges[h] = (merge_slot){key, (uint32_t)r, merged};
    }
    return ABC_OK;
}

static int compare_added(const void *pa, const void *pb) {
    const added_token *a = pa, *b = pb;
    if (a->text[0] != b->text[0]) return a->text[0] < b->text[0] ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static abc_status load_added(tokenizer *tok, const weight_file *wf, abc_error *err) {
    /* A tokenizer without added tokens has no tokenizer.added.* tensors (shapes cannot be 0). */
    if (!wf_tensor(wf, "tokenizer.added.ids") && !wf_tensor(wf, "tokenizer.added.special")) {
        for (int b = 0; b < 257; b++) tok->added_first[b] = 0;
        return ABC_OK;
    }
    const tensor *ids, *special;
    abc_status st = tok_tensor(wf, "tokenizer.added.ids", DT_I32, 1, &ids, err);
    if (st == ABC_OK) st = tok_tensor(wf, "tokenizer.added.special", DT_I32, 1, &special, err);
    if (st != ABC_OK) return st;
    if (special->shape[0] != ids->shape[0] || ids->shape[0] > tok->n_vocab)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.added.ids and tokenizer.added.special disagree in length");
    size_t n = (size_t)ids->shape[0];
    tok->added = xcalloc(n, sizeof *tok->added);
    if (!tok->added) return fail(err, ABC_ERR_NOMEM, "out of memory loading the added tokens");
    /* Optional: absent when no added token strips whitespace. */
    const int32_t *strip = NULL;
    if (wf_tensor(wf, "tokenizer.added.strip")) {
        const tensor *t;
        st = tok_tensor(wf, "tokenizer.added.strip", DT_I32, 1, &t, err);
        if (st != ABC_OK) return st;
        if (t->shape[0] != ids->shape[0])
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added.strip and tokenizer.added.ids disagree in length");
        strip = t->data;
    }
    const int32_t *id = ids->data, *sp = special->data;
    for (size_t i = 0; i < n; i++) {
        if (id[i] < 0 || id[i] >= tok->n_vocab || (sp[i] != 0 && sp[i] != 1))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added entry %zu: bad id %d or flag %d", i, id[i], sp[i]);
        if (strip && (strip[i] & ~(ADDED_LSTRIP | ADDED_RSTRIP)))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.added.strip entry %zu: bad flags %d", i, strip[i]);
        int32_t a = tok->vocab_offsets[id[i]], b = tok->vocab_offsets[id[i] + 1];
        if (a == b) return fail(err, ABC_ERR_FORMAT, "added token %d has no text", id[i]);
        /* Valid UTF-8 text can only match at character boundaries of (valid) input text. */
        size_t bad;
        if (!utf8_validate(tok->vocab_bytes + a, (size_t)(b - a), &bad))
            return fail(err, ABC_ERR_FORMAT, "added token %d is not valid UTF-8", id[i]);
        tok->added[i] = (added_token){tok->vocab_bytes + a, (uint32_t)(b - a), id[i], strip ? strip[i] : 0};
    }
    tok->n_added = n;
    if (n) qsort(tok->added, n, sizeof *tok->added, compare_added);
    size_t i = 0;
    for (int b = 0; b < 256; b++) {
        tok->added_first[b] = (uint32_t)i;
        while (i < n && tok->added[i].text[0] == b) i++;
    }
    tok->added_first[256] = (uint32_t)n;
    return ABC_OK;
}

/* SentencePiece: the <0xNN> token of every byte (its stored bytes are that byte). */
static abc_status load_byte_fallback(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.byte_fallback", DT_I32, 1, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[0] != 256) return fail(err, ABC_ERR_FORMAT, "tokenizer.byte_fallback must have 256 entries");
    const int32_t *id = t->data, *o = tok->vocab_offsets;
    for (int b = 0; b < 256; b++) {
        if (id[b] < 0 || id[b] >= tok->n_vocab || o[id[b] + 1] - o[id[b]] != 1 || tok->vocab_bytes[o[id[b]]] != b)
            return fail(err, ABC_ERR_FORMAT, "tokenizer.byte_fallback: entry %d (id %d) is not the token of byte 0x%02X", b, id[b], b);
        tok->byte_id[b] = id[b];
    }
    return ABC_OK;
}

/* SentencePiece: the single-character tokens, (code point, id) sorted by code point. Their stored
 * bytes are the character's UTF-8, except "▁" which is stored as a space. */
static abc_status load_sp_chars(tokenizer *tok, const weight_file *wf, abc_error *err) {
    const tensor *t;
    abc_status st = tok_tensor(wf, "tokenizer.sp.chars", DT_I32, 2, &t, err);
    if (st != ABC_OK) return st;
    if (t->shape[1] != 2 || t->shape[0] < 1 || t->shape[0] > tok->n_vocab)
        return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars must be [n, 2] with n <= the vocabulary size");
    const int32_t *c = t->data, *o = tok->vocab_offsets;
    size_t n = (size_t)t->shape[0];
    for (int i = 0; i < 128; i++) tok->sp_ascii[i] = -1;
    tok->sp_space_id = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t cp = c[2 * i], id = c[2 * i + 1];
        if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || (i && cp <= c[2 * i - 2]))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: code point %d out of range or order", i, cp);
        if (id < 0 || id >= tok->n_vocab) return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: bad id %d", i, id);
        uint8_t buf[4];
        size_t k = utf8_encode((uint32_t)cp == SP_SPACE ? ' ' : (uint32_t)cp, buf);
        if ((size_t)(o[id + 1] - o[id]) != k || memcmp(tok->vocab_bytes + o[id], buf, k))
            return fail(err, ABC_ERR_FORMAT, "tokenizer.sp.chars row %zu: token %d is not U+%04X", i, id, (unsigned)cp);
        if (cp < 128) tok->sp_ascii[cp] = id;
        if ((uint32_t)cp == SP_SPACE) tok->sp_space_id = id;
    }
    tok->sp_chars = c;
    tok->n_sp_chars = n;
    return ABC_OK;
}

/* The id the post-processor puts first (metadata tokenizer.bos_id; -1: none). */
static abc_status load_bos(tokenizer *tok, const weight_file *wf, abc_error *err) {
    int64_t bos;
    if (!wf_int(wf, "tokenizer.bos_id", &bos, err)) return ABC_ERR_FORMAT;
    if (bos < -1 || bos >= tok->n_vocab) return fail(err, ABC_ERR_FORMAT, "tokenizer.bos_id %lld is out of range", (long long)bos);
    tok->bos_id = (int32_t)bos;
    return ABC_OK;
}

static abc_status tokenizer_load(const weight_file *wf, tokenizer **out, abc_error *err) {
    if (!wf || !out) return fail(err, ABC_ERR_INVALID_ARG, "tokenizer_load: NULL argument");
    *out = NULL;
    /* Indexed alike: model i goes with pre-tokenizer i and the normalizers of row i. */
    static const char *const models[] = {"bpe_byte_level", "bpe_sentencepiece"};
    static const char *const pretokenizers[] = {"qwen2", "none"};
    static const char *const normalizers[] = {"nfc", "none", "prepend_replace"};
    int model = 0, pretokenizer = 0, normalizer = 0; /* set by tok_meta_choice when it succeeds */
    abc_status st = tok_meta_choice(wf, "tokenizer.model", models, 2, &model, err);
    if (st == ABC_OK) st = tok_meta_choice(wf, "tokenizer.pretokenizer", pretokenizers, 2, &pretokenizer, err);
    if (st == ABC_OK) st = tok_meta_choice(wf, "tokenizer.normalizer", normalizers, 3, &normalizer, err);
    if (st != ABC_OK) return st;
    bool sp = model == 1;
    if (pretokenizer != model || (normalizer == 2) != sp)
        return fail(err, ABC_ERR_UNSUPPORTED, "tokenizer.model %s does not go with tokenizer.pretokenizer %s and normalizer %s",
                    models[model], pretokenizers[pretokenizer], normalizers[normalizer]);
    tokenizer *tok = xcalloc(1, sizeof *tok);
    if (!tok) return fail(err, ABC_ERR_NOMEM, "out of memory loading the tokenizer");
    tok->nfc = normalizer == 0;
    tok->kind = sp ? TOK_SENTENCEPIECE : TOK_BYTE_LEVEL;
    tok->bos_id = -1;
    st = load_vocab(tok, wf, err);
    if (st == ABC_OK) st = sp ? load_byte_fallback(tok, wf, err) : find_byte_tokens(tok, err);
    if (st == ABC_OK && sp) st = load_sp_chars(tok, wf, err);
    if (st == ABC_OK && sp) st = load_bos(tok, wf, err);
    if (st == ABC_OK) st = load_merges(tok, wf, err);
    if (st == ABC_OK) st = load_added(tok, wf, err);
    if (st != ABC_OK) {
        tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return ABC_OK;
}

/* ---- public API (abc.h) ---- */

abc_status abc_tokenize(const abc_model *model, const char *text, size_t len, int32_t *ids, size_t cap,
                        size_t *n_ids, abc_error *err) {
    clear_error(err);
    if (!model || (!text && len) || (!ids && cap) || !n_ids)
        return fail(err, ABC_ERR_INVALID_ARG, "abc_tokenize: NULL argument");
    *n_ids = 0;
    int_vec v = {0};
    abc_status st = tokenizer_encode(model_tokenizer(model), text, len, &v, err);
    if (st != ABC_OK) return st;
    *n_ids = v.len;
    if (cap && v.len) memcpy(ids, v.data, MIN(v.len, cap) * sizeof *ids);
    int_vec_free(&v);
    if (*n_ids > cap)
        return fail(err, ABC_ERR_INVALID_ARG, "abc_tokenize: %zu ids do not fit in a buffer of %zu", *n_ids, cap);
    return ABC_OK;
}

const char *abc_token_bytes(const abc_model *model, int32_t id, size_t *len) {
    if (!model) return NULL;
    return tokenizer_token_bytes(model_tokenizer(model), id, len);
}

static int32_t tokenizer_bos_id(const tokenizer *tok) { return tok ? tok->bos_id : -1; }

/* ================================================================================================
 * 5. Image decode: PNG, JPEG, PPM/PGM → 8-bit RGB, byte for byte as Pillow's Image.open(f).convert("RGB")
 *
 *   5.1 helpers   5.2 inflate (RFC 1950/1951)   5.3 PNG   5.4 JPEG (markers, Huffman, sequential and
 *   progressive scans, islow IDCT, fancy upsampling, colour)   5.5 PPM/PGM   5.6 dispatch and API
 *
 * The JPEG path reproduces libjpeg-turbo's default decode as Pillow drives it (islow IDCT, fancy
 * upsampling, its fixed-point YCbCr tables), including what it does with damaged entropy data: a bad
 * Huffman code decodes as 0, data cut by a marker reads as zero bits and the rest of the restart
 * interval stays zero. A file that simply ends early is an error, as it is for Pillow ("image file is
 * truncated"). PNG checks chunk CRCs and the Adler-32 (stricter than Pillow) and never inflates more
 * than the header implies.
 * ================================================================================================ */

static uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static unsigned load_be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* ---- 5.1 helpers ---- */

/* What a decode may cost: the pixel limit, and the decode budget (pixels per byte of input) with the
 * input's size. */
typedef struct {
    size_t max_pixels;
    size_t max_ratio;
    size_t input_size;
} image_limits;

/* Refuses empty images, images over the pixel limit and images over the decode budget; called before
 * anything is allocated, so a small file that claims a huge image costs nothing. */
static abc_status image_check_size(uint64_t width, uint64_t height, const image_limits *lim, const char *format,
                                   abc_error *err) {
    if (width == 0 || height == 0)
        return fail(err, ABC_ERR_IMAGE, "%s image has zero width or height (%llux%llu)", format,
                    (unsigned long long)width, (unsigned long long)height);
    if (width > INT_MAX || height > INT_MAX || width * height > (uint64_t)lim->max_pixels)
        return fail(err, ABC_ERR_TOO_LARGE, "%s image is %llux%llu pixels, more than the limit of %zu pixels",
                    format, (unsigned long long)width, (unsigned long long)height, lim->max_pixels);
    /* width·height ≤ max_pixels < 2^64 here; the product ratio·size saturates. */
    const uint64_t budget = lim->input_size && lim->max_ratio > UINT64_MAX / lim->input_size
                                ? UINT64_MAX
                                : (uint64_t)lim->max_ratio * lim->input_size;
    if (width * height > budget)
        return fail(err, ABC_ERR_TOO_LARGE,
                    "%s image claims %llux%llu pixels from %zu bytes of file, more than the decode budget of %zu "
                    "pixels per byte (truncated or hollow file?)",
                    format, (unsigned long long)width, (unsigned long long)height, lim->input_size, lim->max_ratio);
    return ABC_OK;
}

static abc_status image_alloc(abc_image *img, uint64_t width, uint64_t height, abc_error *err) {
    size_t n;
    if (!mul_size((size_t)width, (size_t)height, &n) || !mul_size(n, 3, &n))
        return fail(err, ABC_ERR_TOO_LARGE, "image of %llux%llu pixels does not fit in memory",
                    (unsigned long long)width, (unsigned long long)height);
    img->rgb = xmalloc(n);
    if (!img->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory for a %llux%llu image",
                                (unsigned long long)width, (unsigned long long)height);
    img->width = (int)width;
    img->height = (int)height;
    return ABC_OK;
}

/* ---- 5.2 inflate (zlib stream, RFC 1950 / RFC 1951) ---- */

/* LSB-first bit reader. Past the end it supplies zero bytes and counts them, so callers can detect a
 * truncated stream with one comparison instead of a check per bit. */
typedef struct {
    const uint8_t *p, *end;
    uint64_t bits;
    int nbits;
    int64_t pad_bytes;
} lsb_reader;

static void lsb_refill(lsb_reader *b) {
    while (b->nbits <= 56) {
        uint64_t byte = 0;
        if (b->p < b->end) byte = *b->p++;
        else b->pad_bytes++;
        b->bits |= byte << b->nbits;
        b->nbits += 8;
    }
}

static inline uint32_t lsb_get(lsb_reader *b, int n) {
    if (b->nbits < n) lsb_refill(b);
    uint32_t v = (uint32_t)(b->bits & ((UINT64_C(1) << n) - 1));
    b->bits >>= n;
    b->nbits -= n;
    return v;
}

/* True once the decoder has consumed bits that are not in the input. */
static inline bool lsb_overrun(const lsb_reader *b) { return b->pad_bytes * 8 > b->nbits; }

#define INFL_FAST_BITS 10

/* Canonical Huffman code: a lookup table for codes up to INFL_FAST_BITS bits, then bit by bit. */
typedef struct {
    uint16_t fast[1 << INFL_FAST_BITS]; /* (length << 9) | symbol; 0 = longer code or none */
    uint16_t count[16];                 /* number of codes of each length */
    uint16_t symbol[288];               /* symbols in canonical order */
} infl_huff;

/* Builds the code from code lengths. Like zlib: an over-subscribed code is an error, an incomplete one
 * too unless it is a single code of length 1 (allowed for literal/length and distance codes), and a code
 * without any symbol is accepted but fails when used. */
static bool infl_build(infl_huff *h, const uint8_t *lengths, int n, bool is_code_length_code) {
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++) h->count[lengths[i]]++;
    h->count[0] = 0;
    int left = 1, max_len = 0;
    for (int len = 1; len <= 15; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) return false;
        if (h->count[len]) max_len = len;
    }
    if (max_len > 0 && left > 0 && (is_code_length_code || max_len != 1)) return false;
    uint16_t offs[16];
    offs[1] = 0;
    for (int len = 1; len < 15; len++) offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    for (int i = 0; i < n; i++)
        if (lengths[i]) h->symbol[offs[lengths[i]]++] = (uint16_t)i;
    memset(h->fast, 0, sizeof h->fast);
    int code = 0, k = 0;
    for (int len = 1; len <= INFL_FAST_BITS; len++, code <<= 1) {
        for (int i = 0; i < h->count[len]; i++, k++, code++) {
            int rev = 0;
            for (int j = 0; j < len; j++) rev |= ((code >> j) & 1) << (len - 1 - j);
            for (int j = rev; j < (1 << INFL_FAST_BITS); j += 1 << len)
                h->fast[j] = (uint16_t)(len << 9 | h->symbol[k]);
        }
    }
    return true;
}

/* Returns the next symbol, or -1 for a bit pattern that is no code. */
static inline int infl_decode(lsb_reader *b, const infl_huff *h) {
    if (b->nbits < 15) lsb_refill(b);
    unsigned e = h->fast[b->bits & ((1u << INFL_FAST_BITS) - 1)];
    if (e) {
        b->bits >>= e >> 9;
        b->nbits -= (int)(e >> 9);
        return (int)(e & 511);
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= 15; len++) {
        code |= (int)(b->bits & 1);
        b->bits >>= 1;
        b->nbits--;
        int count = h->count[len];
        if (code - first < count) return h->symbol[index + code - first];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

static uint32_t adler32(const uint8_t *p, size_t n) {
    uint32_t a = 1, b = 0;
    while (n) {
        size_t chunk = n < 5552 ? n : 5552; /* largest run before b can overflow 32 bits */
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return b << 16 | a;
}

typedef struct {
    lsb_reader in;
    uint8_t *out;
    size_t out_size, pos;
    infl_huff lit, dist;
} inflater;

static const uint16_t infl_len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                           31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t infl_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                           2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t infl_dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                            33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                            1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t infl_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                            6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static abc_status infl_truncated(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "PNG image data is truncated (the zlib stream ends early)");
}
static abc_status infl_too_long(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "PNG image data inflates to more bytes than the header implies");
}

static abc_status infl_stored(inflater *z, abc_error *err) {
    lsb_reader *b = &z->in;
    int drop = b->nbits & 7; /* to the byte boundary */
    b->bits >>= drop;
    b->nbits -= drop;
    int64_t unread = b->nbits / 8 - b->pad_bytes; /* whole input bytes still in the bit buffer */
    if (unread < 0) return infl_truncated(err);
    b->p -= unread;
    b->bits = 0;
    b->nbits = 0;
    b->pad_bytes = 0;
    if (b->end - b->p < 4) return infl_truncated(err);
    unsigned len = b->p[0] | b->p[1] << 8, nlen = b->p[2] | b->p[3] << 8;
    b->p += 4;
    if (len != (~nlen & 0xffff)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (stored block length)");
    if ((size_t)(b->end - b->p) < len) return infl_truncated(err);
    if (len > z->out_size - z->pos) return infl_too_long(err);
    memcpy(z->out + z->pos, b->p, len);
    b->p += len;
    z->pos += len;
    return ABC_OK;
}

static abc_status infl_codes(inflater *z, abc_error *err) {
    lsb_reader *b = &z->in;
    uint8_t *out = z->out;
    size_t pos = z->pos, size = z->out_size;
    for (;;) {
        int sym = infl_decode(b, &z->lit);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (sym < 256) {
            if (sym < 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid literal/length code)");
            if (pos >= size) return infl_too_long(err);
            out[pos++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) break;
        sym -= 257;
        if (sym >= 29) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid length symbol)");
        size_t len = infl_len_base[sym] + lsb_get(b, infl_len_extra[sym]);
        int dsym = infl_decode(b, &z->dist);
        if (dsym < 0 || dsym >= 30) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid distance code)");
        size_t dist = infl_dist_base[dsym] + lsb_get(b, infl_dist_extra[dsym]);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (dist > pos) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (distance too far back)");
        if (len > size - pos) return infl_too_long(err);
        const uint8_t *from = out + pos - dist;
        uint8_t *to = out + pos;
        for (size_t i = 0; i < len; i++) to[i] = from[i]; /* may overlap: byte by byte on purpose */
        pos += len;
    }
    z->pos = pos;
    return ABC_OK;
}

static void infl_fixed_tables(inflater *z) {
    uint8_t lengths[288];
    for (int i = 0; i < 288; i++) lengths[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    infl_build(&z->lit, lengths, 288, false);
    for (int i = 0; i < 32; i++) lengths[i] = 5; /* 30 and 31 complete the code; decoding rejects them */
    infl_build(&z->dist, lengths, 32, false);
}

static abc_status infl_dynamic_tables(inflater *z, abc_error *err) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    lsb_reader *b = &z->in;
    int nlit = (int)lsb_get(b, 5) + 257, ndist = (int)lsb_get(b, 5) + 1, ncode = (int)lsb_get(b, 4) + 4;
    if (nlit > 286 || ndist > 30) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (too many length or distance symbols)");
    uint8_t lengths[286 + 30] = {0};
    for (int i = 0; i < ncode; i++) lengths[order[i]] = (uint8_t)lsb_get(b, 3);
    infl_huff *codes = &z->lit; /* the literal table is built afterwards: borrow its storage */
    if (!infl_build(codes, lengths, 19, true)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad code lengths code)");
    memset(lengths, 0, 19);
    int n = 0;
    while (n < nlit + ndist) {
        int sym = infl_decode(b, codes);
        if (lsb_overrun(b)) return infl_truncated(err);
        if (sym < 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid code length code)");
        if (sym < 16) {
            lengths[n++] = (uint8_t)sym;
            continue;
        }
        int repeat, value = 0;
        if (sym == 16) {
            if (n == 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (repeat with no previous length)");
            value = lengths[n - 1];
            repeat = 3 + (int)lsb_get(b, 2);
        } else if (sym == 17) {
            repeat = 3 + (int)lsb_get(b, 3);
        } else {
            repeat = 11 + (int)lsb_get(b, 7);
        }
        if (n + repeat > nlit + ndist) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (too many code lengths)");
        while (repeat--) lengths[n++] = (uint8_t)value;
    }
    if (lengths[256] == 0) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (no end-of-block code)");
    if (!infl_build(&z->lit, lengths, nlit, false)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad literal/length code)");
    if (!infl_build(&z->dist, lengths + nlit, ndist, false)) return fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (bad distance code)");
    return ABC_OK;
}

/* Inflates a zlib stream into exactly out_size bytes: more output is an error (a zip bomb cannot make
 * us write past what the header announced), less is a truncated stream; the Adler-32 must match. */
static abc_status zlib_inflate(const uint8_t *src, size_t n, uint8_t *out, size_t out_size, abc_error *err) {
    if (n < 2) return infl_truncated(err);
    unsigned cmf = src[0], flg = src[1];
    if ((cmf & 15) != 8 || (cmf >> 4) > 7 || (cmf * 256 + flg) % 31 != 0)
        return fail(err, ABC_ERR_IMAGE, "PNG image data is not a valid zlib stream (bad header)");
    if (flg & 32) return fail(err, ABC_ERR_IMAGE, "PNG image data needs a preset zlib dictionary");
    inflater *z = xmalloc(sizeof *z);
    if (!z) return fail(err, ABC_ERR_NOMEM, "out of memory for the inflater");
    z->in = (lsb_reader){src + 2, src + n, 0, 0, 0};
    z->out = out;
    z->out_size = out_size;
    z->pos = 0;
    abc_status st = ABC_OK;
    bool last = false;
    while (!last && st == ABC_OK) {
        last = lsb_get(&z->in, 1);
        unsigned type = lsb_get(&z->in, 2);
        if (lsb_overrun(&z->in)) st = infl_truncated(err);
        else if (type == 0) st = infl_stored(z, err);
        else if (type == 1) {
            infl_fixed_tables(z);
            st = infl_codes(z, err);
        } else if (type == 2) {
            st = infl_dynamic_tables(z, err);
            if (st == ABC_OK) st = infl_codes(z, err);
        } else {
            st = fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (invalid deflate block type)");
        }
    }
    if (st == ABC_OK && z->pos != out_size) st = infl_truncated(err);
    if (st == ABC_OK) {
        lsb_reader *b = &z->in;
        int drop = b->nbits & 7;
        b->bits >>= drop;
        b->nbits -= drop;
        uint32_t want = 0;
        for (int i = 0; i < 4; i++) want = want << 8 | lsb_get(b, 8);
        if (lsb_overrun(b)) st = fail(err, ABC_ERR_IMAGE, "PNG image data is truncated (no Adler-32 checksum)");
        else if (want != adler32(out, out_size))
            st = fail(err, ABC_ERR_IMAGE, "PNG image data is corrupt (Adler-32 checksum mismatch)");
    }
    free(z);
    return st;
}

/* ---- 5.3 PNG ---- */

typedef struct {
    uint32_t width, height;
    int depth, color_type, interlace, channels;
    uint8_t palette[256 * 3];
    int palette_len;
    bool have_palette;
} png_header;

static void crc32_table_init(uint32_t table[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc32_compute(const uint32_t table[256], const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = table[(c ^ *p++) & 255] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static abc_status png_parse_ihdr(const uint8_t *d, uint32_t len, png_header *h, abc_error *err) {
    if (len != 13) return fail(err, ABC_ERR_IMAGE, "PNG IHDR chunk has length %u, not 13", len);
    h->width = load_be32(d);
    h->height = load_be32(d + 4);
    h->depth = d[8];
    h->color_type = d[9];
    h->interlace = d[12];
    if (h->width > 0x7FFFFFFFu || h->height > 0x7FFFFFFFu)
        return fail(err, ABC_ERR_IMAGE, "PNG dimensions %ux%u exceed 2^31-1", h->width, h->height);
    static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
    int ct = h->color_type, dp = h->depth;
    bool ok = ct <= 6 && channels[ct] != 0;
    if (ok) {
        if (ct == 0) ok = dp == 1 || dp == 2 || dp == 4 || dp == 8 || dp == 16;
        else if (ct == 3) ok = dp == 1 || dp == 2 || dp == 4 || dp == 8;
        else ok = dp == 8 || dp == 16;
    }
    if (!ok) return fail(err, ABC_ERR_IMAGE, "PNG has an invalid colour type %d / bit depth %d", ct, dp);
    h->channels = channels[ct];
    if (d[10] != 0 || d[11] != 0)
        return fail(err, ABC_ERR_IMAGE, "PNG uses an unknown compression (%d) or filter method (%d)", d[10], d[11]);
    if (h->interlace > 1) return fail(err, ABC_ERR_IMAGE, "PNG uses an unknown interlace method %d", h->interlace);
    return ABC_OK;
}

typedef struct {
    int x0, y0, dx, dy;
} png_pass;

static const png_pass png_adam7[7] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                      {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

static size_t png_pass_dim(uint32_t size, int start, int step) {
    return size > (uint32_t)start ? (size - (uint32_t)start + (uint32_t)step - 1) / (uint32_t)step : 0;
}

/* Bytes of one filtered row (without its filter byte). Sizes are bounded by the pixel limit. */
static size_t png_row_bytes(const png_header *h, size_t width) {
    return (width * (size_t)h->channels * (size_t)h->depth + 7) / 8;
}

static inline uint8_t png_paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undoes the filter of one row in place; prev is the previous reconstructed row (zeros for the first). */
static bool png_unfilter_row(int filter, uint8_t *row, const uint8_t *prev, size_t n, size_t bpp) {
    switch (filter) {
    case 0: break;
    case 1:
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        break;
    case 2:
        for (size_t i = 0; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        break;
    case 3:
        for (size_t i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        break;
    case 4:
        for (size_t i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        for (size_t i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + png_paeth(row[i - bpp], prev[i], prev[i - bpp]));
        break;
    default: return false;
    }
    return true;
}

static inline unsigned png_sample(const uint8_t *row, size_t i, int depth) {
    if (depth == 8) return row[i];
    if (depth == 16) return (unsigned)row[2 * i] << 8 | row[2 * i + 1];
    size_t bit = i * (size_t)depth;
    return (row[bit >> 3] >> (8 - depth - (int)(bit & 7))) & ((1u << depth) - 1);
}

/* One unfiltered row → RGB pixels at x0, x0+dx, ... of output row `out_row`. Pillow's conversions:
 * low-bit grey is scaled (1 bit → 0/255, 2 bits ×85, 4 bits ×17), 16-bit grey is mode "I" and clips to
 * 255, other 16-bit samples keep their high byte, alpha is dropped, palette indices past the PLTE read
 * Pillow's default grey ramp (i, i, i). */
static void png_row_to_rgb(const png_header *h, const uint8_t *row, size_t width, uint8_t *out_row, int x0, int dx) {
    uint8_t *o = out_row + (size_t)x0 * 3;
    size_t step = (size_t)dx * 3;
    int ct = h->color_type, depth = h->depth;
    for (size_t x = 0; x < width; x++, o += step) {
        unsigned r, g, b;
        if (ct == 0) {
            unsigned v = png_sample(row, x, depth);
            if (depth == 1) v = v ? 255 : 0;
            else if (depth == 2) v *= 85;
            else if (depth == 4) v *= 17;
            else if (depth == 16) v = v > 255 ? 255 : v;
            r = g = b = v;
        } else if (ct == 3) {
            unsigned v = png_sample(row, x, depth);
            if ((int)v < h->palette_len) {
                r = h->palette[3 * v];
                g = h->palette[3 * v + 1];
                b = h->palette[3 * v + 2];
            } else {
                r = g = b = v;
            }
        } else {
            size_t i = x * (size_t)h->channels;
            size_t bytes = (size_t)depth / 8; /* 1 or 2: the high byte comes first */
            r = row[i * bytes];
            if (ct == 4) g = b = r;
            else {
                g = row[(i + 1) * bytes];
                b = row[(i + 2) * bytes];
            }
        }
        o[0] = (uint8_t)r;
        o[1] = (uint8_t)g;
        o[2] = (uint8_t)b;
    }
}

static abc_status png_reconstruct(const png_header *h, uint8_t *raw, abc_image *img, abc_error *err) {
    size_t bpp = ((size_t)h->channels * (size_t)h->depth + 7) / 8;
    size_t max_row = png_row_bytes(h, h->width);
    uint8_t *zero = xcalloc(max_row + 1, 1);
    if (!zero) return fail(err, ABC_ERR_NOMEM, "out of memory for a PNG row");
    int npass = h->interlace ? 7 : 1;
    static const png_pass whole = {0, 0, 1, 1};
    uint8_t *p = raw;
    for (int pi = 0; pi < npass; pi++) {
        const png_pass *ps = h->interlace ? &png_adam7[pi] : &whole;
        size_t pw = png_pass_dim(h->width, ps->x0, ps->dx), ph = png_pass_dim(h->height, ps->y0, ps->dy);
        if (pw == 0 || ph == 0) continue;
        size_t rb = png_row_bytes(h, pw);
        const uint8_t *prev = zero;
        for (size_t y = 0; y < ph; y++) {
            int filter = p[0];
            uint8_t *row = p + 1;
            if (!png_unfilter_row(filter, row, prev, rb, bpp)) {
                free(zero);
                return fail(err, ABC_ERR_IMAGE, "PNG row uses an unknown filter type %d", filter);
            }
            size_t oy = (size_t)ps->y0 + y * (size_t)ps->dy;
            png_row_to_rgb(h, row, pw, img->rgb + oy * (size_t)img->width * 3, ps->x0, ps->dx);
            prev = row;
            p += rb + 1;
        }
    }
    free(zero);
    return ABC_OK;
}

/* Size of the inflated data: every (non-empty) pass row has a filter byte and its packed samples. */
static bool png_raw_size(const png_header *h, size_t *out) {
    size_t total = 0;
    int npass = h->interlace ? 7 : 1;
    for (int pi = 0; pi < npass; pi++) {
        size_t pw = h->interlace ? png_pass_dim(h->width, png_adam7[pi].x0, png_adam7[pi].dx) : h->width;
        size_t ph = h->interlace ? png_pass_dim(h->height, png_adam7[pi].y0, png_adam7[pi].dy) : h->height;
        if (pw == 0 || ph == 0) continue;
        size_t rows;
        if (!mul_size(ph, png_row_bytes(h, pw) + 1, &rows) || total > SIZE_MAX - rows) return false;
        total += rows;
    }
    *out = total;
    return true;
}

static abc_status png_decode(const uint8_t *data, size_t size, const image_limits *lim, abc_image *out, abc_error *err) {
    uint32_t crc_table[256];
    crc32_table_init(crc_table);
    png_header h;
    memset(&h, 0, sizeof h);
    bool have_header = false;
    size_t pos = 8, idat_start = 0, idat_total = 0;
    int idat_chunks = 0;
    /* Pass 1: validate chunks up to the end of the (first) run of IDAT chunks; later chunks are ignored,
     * as Pillow does. */
    for (;;) {
        if (size - pos < 12) {
            if (idat_chunks) break;
            return fail(err, ABC_ERR_IMAGE, "PNG file is truncated (chunk header at byte %zu)", pos);
        }
        uint32_t len = load_be32(data + pos);
        const uint8_t *type = data + pos + 4, *body = data + pos + 8;
        if (len > 0x7FFFFFFFu) return fail(err, ABC_ERR_IMAGE, "PNG chunk length %u is invalid", len);
        bool is_idat = memcmp(type, "IDAT", 4) == 0;
        if (idat_chunks && !is_idat) break;
        if (len > size - pos - 12) {
            return fail(err, ABC_ERR_IMAGE, "PNG file is truncated (chunk %.4s of %u bytes at byte %zu)",
                        (const char *)type, len, pos);
        }
        if (crc32_compute(crc_table, type, (size_t)len + 4) != load_be32(body + len))
            return fail(err, ABC_ERR_IMAGE, "PNG chunk %.4s has a bad CRC", (const char *)type);
        if (!have_header) {
            if (memcmp(type, "IHDR", 4) != 0) return fail(err, ABC_ERR_IMAGE, "PNG does not start with an IHDR chunk");
            abc_status st = png_parse_ihdr(body, len, &h, err);
            if (st == ABC_OK) st = image_check_size(h.width, h.height, lim, "PNG", err);
            if (st != ABC_OK) return st;
            have_header = true;
        } else if (is_idat) {
            if (idat_chunks++ == 0) idat_start = pos;
            idat_total += len;
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (h.color_type == 3) {
                if (len % 3 != 0 || len == 0 || len > 768)
                    return fail(err, ABC_ERR_IMAGE, "PNG palette has an invalid length %u", len);
                memcpy(h.palette, body, len);
                h.palette_len = (int)(len / 3);
            }
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        pos += (size_t)len + 12;
    }
    if (!idat_chunks) return fail(err, ABC_ERR_IMAGE, "PNG has no image data (no IDAT chunk)");
    size_t raw_size;
    if (!png_raw_size(&h, &raw_size)) return fail(err, ABC_ERR_TOO_LARGE, "PNG image data is too large");
    uint8_t *idat = xmalloc(idat_total);
    uint8_t *raw = xmalloc(raw_size);
    abc_status st = ABC_OK;
    if (!idat || !raw) st = fail(err, ABC_ERR_NOMEM, "out of memory for PNG image data");
    if (st == ABC_OK) {
        size_t at = 0;
        for (pos = idat_start; at < idat_total;) { /* pass 2: gather the IDAT payloads */
            uint32_t len = load_be32(data + pos);
            memcpy(idat + at, data + pos + 8, len);
            at += len;
            pos += (size_t)len + 12;
        }
        st = zlib_inflate(idat, idat_total, raw, raw_size, err);
    }
    free(idat);
    if (st == ABC_OK) st = image_alloc(out, h.width, h.height, err);
    if (st == ABC_OK) {
        st = png_reconstruct(&h, raw, out, err);
        if (st != ABC_OK) {
            free(out->rgb);
            out->rgb = NULL;
        }
    }
    free(raw);
    return st;
}

/* ---- 5.4 JPEG ---- */

/* Zigzag position → natural (row-major) index; 16 extra entries absorb run lengths that overshoot on
 * corrupt data, exactly as libjpeg's table does. */
static const uint8_t jpeg_natural_order[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,
    6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

#define JPEG_FAST_BITS 9
#define JPEG_MAX_BLOCKS_IN_MCU 10 /* libjpeg's D_MAX_BLOCKS_IN_MCU */

typedef struct {
    int32_t maxcode[18];    /* largest code of each length, -1 if none; [17] is a sentinel */
    int32_t valoffset[18];  /* code + valoffset[len] = index into huffval */
    uint8_t huffval[256];
    uint16_t fast[1 << JPEG_FAST_BITS]; /* (length << 8) | symbol for codes of ≤ JPEG_FAST_BITS bits */
    uint8_t max_symbol;
    bool defined, valid;
} jpeg_huff;

/* Builds the decoding tables from the DHT counts (bits[1..16]) and symbols, with libjpeg's checks. */
static void jpeg_huff_build(jpeg_huff *t, const uint8_t bits[17], const uint8_t *vals, int nvals) {
    memset(t, 0, sizeof *t);
    t->defined = true;
    memcpy(t->huffval, vals, (size_t)nvals);
    uint8_t size[257];
    uint16_t codes[256];
    int p = 0;
    for (int l = 1; l <= 16; l++)
        for (int i = 0; i < bits[l]; i++) size[p++] = (uint8_t)l;
    size[p] = 0;
    int code = 0, si = size[0];
    p = 0;
    while (size[p]) {
        while (size[p] == si) codes[p++] = (uint16_t)code++;
        if (code >= (1 << si)) return; /* over-subscribed: invalid */
        code <<= 1;
        si++;
    }
    p = 0;
    for (int l = 1; l <= 16; l++) {
        if (bits[l]) {
            t->valoffset[l] = p - codes[p];
            p += bits[l];
            t->maxcode[l] = codes[p - 1];
        } else {
            t->maxcode[l] = -1;
        }
    }
    t->maxcode[17] = 0xFFFFF;
    for (int i = 0, k = 0; i < nvals; i++) {
        if (vals[i] > t->max_symbol) t->max_symbol = vals[i];
        int l = size[i];
        if (l <= JPEG_FAST_BITS) {
            int first = codes[i] << (JPEG_FAST_BITS - l), n = 1 << (JPEG_FAST_BITS - l);
            for (k = 0; k < n; k++) t->fast[first + k] = (uint16_t)(l << 8 | vals[i]);
        }
    }
    t->valid = true;
}

/* The default tables of JPEG Annex K.3, which libjpeg-turbo installs for tables a file leaves undefined
 * (Motion-JPEG frames have none). */
static void jpeg_std_huff_tables(jpeg_huff dc[4], jpeg_huff ac[4]) {
    static const uint8_t dc_lum_bits[17] = {0, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t dc_chr_bits[17] = {0, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    static const uint8_t dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const uint8_t ac_lum_bits[17] = {0, 0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d};
    static const uint8_t ac_lum_vals[162] = {
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
        0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33,
        0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34,
        0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55,
        0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76,
        0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96,
        0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5,
        0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4,
        0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1,
        0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
    static const uint8_t ac_chr_bits[17] = {0, 0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77};
    static const uint8_t ac_chr_vals[162] = {
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13,
        0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62,
        0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29,
        0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54,
        0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75,
        0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3,
        0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2,
        0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
        0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
    jpeg_huff_build(&dc[0], dc_lum_bits, dc_vals, 12);
    jpeg_huff_build(&dc[1], dc_chr_bits, dc_vals, 12);
    jpeg_huff_build(&ac[0], ac_lum_bits, ac_lum_vals, 162);
    jpeg_huff_build(&ac[1], ac_chr_bits, ac_chr_vals, 162);
}

/* MSB-first entropy-data reader: removes stuffed zero bytes and stops at markers. Bits needed past a
 * marker read as zeros and set `insufficient` (libjpeg's insufficient_data); running off the end of the
 * file sets `hit_eof` (the file is truncated). */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    uint64_t buf; /* valid bits are left-aligned */
    int nbits;
    int marker;   /* marker code met in the data (0 if none yet); pos is past it */
    bool insufficient, hit_eof;
} jpeg_bits;

static void jpeg_bits_fill(jpeg_bits *b) {
    while (b->nbits <= 56 && !b->marker) {
        if (b->pos >= b->size) {
            b->hit_eof = true;
            break;
        }
        unsigned c = b->data[b->pos];
        if (c == 0xFF) {
            size_t q = b->pos + 1;
            while (q < b->size && b->data[q] == 0xFF) q++; /* fill bytes */
            if (q >= b->size) {
                b->pos = b->size;
                b->hit_eof = true;
                break;
            }
            if (b->data[q] != 0) {
                b->marker = b->data[q];
                b->pos = q + 1;
                break;
            }
            b->pos = q + 1; /* FF 00: a data byte 0xFF */
        } else {
            b->pos++;
        }
        b->buf |= (uint64_t)c << (56 - b->nbits);
        b->nbits += 8;
    }
}

/* Makes at least n bits available, padding with zeros past the end of the data as libjpeg does. */
static inline void jpeg_bits_need(jpeg_bits *b, int n) {
    if (b->nbits >= n) return;
    jpeg_bits_fill(b);
    if (b->nbits < n) {
        b->insufficient = true;
        b->nbits = 64; /* the buffer's low bits are already zero */
    }
}

static inline unsigned jpeg_get_bits(jpeg_bits *b, int n) {
    if (n == 0) return 0;
    jpeg_bits_need(b, n);
    unsigned v = (unsigned)(b->buf >> (64 - n));
    b->buf <<= n;
    b->nbits -= n;
    return v;
}

static inline int jpeg_extend(unsigned v, int s) {
    return v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v;
}

/* A bit pattern that is no code (17 bits without a match) decodes as symbol 0, as in libjpeg. */
static int jpeg_huff_decode_slow(jpeg_bits *b, const jpeg_huff *t) {
    int32_t code = 0;
    for (int l = 1; l <= 17; l++) {
        code = code << 1 | (int32_t)jpeg_get_bits(b, 1);
        if (code <= t->maxcode[l]) return l == 17 ? 0 : t->huffval[(code + t->valoffset[l]) & 0xFF];
    }
    return 0;
}

static inline int jpeg_huff_decode(jpeg_bits *b, const jpeg_huff *t) {
    if (b->nbits < JPEG_FAST_BITS) jpeg_bits_fill(b);
    unsigned e = t->fast[b->buf >> (64 - JPEG_FAST_BITS)];
    int len = (int)(e >> 8);
    if (e && len <= b->nbits) {
        b->buf <<= len;
        b->nbits -= len;
        return (int)(e & 0xFF);
    }
    return jpeg_huff_decode_slow(b, t);
}

typedef struct {
    int id, h, v, tq;
    int dc_tbl, ac_tbl;             /* of the current scan */
    int bw, bh;                     /* coefficient blocks allocated (whole MCUs) */
    int wb, hb;                     /* blocks that hold samples: ceil(dw/8) × ceil(dh/8) */
    int dw, dh;                     /* downsampled size in samples */
    int16_t *coef;                  /* bw·bh blocks of 64 coefficients, natural order */
    uint16_t quant[64];             /* latched at the component's first scan (natural order) */
    bool quant_latched;
    int coef_bits[64];              /* progressive: current successive-approximation bit, -1 = none yet */
    int last_dc;
    uint8_t *plane;                 /* samples after the IDCT: (bw·8) × (bh·8) */
} jpeg_component;

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    jpeg_huff dc[4], ac[4];
    uint16_t qt[4][64];
    bool qt_defined[4];
    unsigned restart_interval;
    bool saw_jfif, saw_adobe, progressive, have_frame;
    int adobe_transform;
    int width, height, ncomp, hmax, vmax, mcux, mcuy;
    jpeg_component comp[4];
    int scans;
    /* current scan */
    int scan_ncomp, scan_comp[4], ss, se, ah, al;
    jpeg_bits bits;
    int eobrun;
    unsigned restarts_to_go;
    int next_restart;
    bool dc_overflow;
    uint8_t idct_range[1024]; /* libjpeg's post-IDCT range limit, indexed by (value & 1023) */
} jpeg_decoder;

static abc_status jpeg_truncated(abc_error *err) {
    return fail(err, ABC_ERR_IMAGE, "JPEG file is truncated");
}

/* Reads the next marker from d->pos like libjpeg's next_marker: skips garbage and fill bytes. */
static bool jpeg_next_marker(jpeg_decoder *d, int *marker) {
    for (;;) {
        while (d->pos < d->size && d->data[d->pos] != 0xFF) d->pos++;
        while (d->pos < d->size && d->data[d->pos] == 0xFF) d->pos++;
        if (d->pos >= d->size) return false;
        int c = d->data[d->pos++];
        if (c != 0) {
            *marker = c;
            return true;
        }
    }
}

static abc_status jpeg_parse_dqt(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    while (len > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15;
        if (tq > 3) return fail(err, ABC_ERR_IMAGE, "JPEG quantization table index %d is out of range", tq);
        if (pq > 1) return fail(err, ABC_ERR_IMAGE, "JPEG quantization table precision %d is invalid", pq);
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (len < need) return fail(err, ABC_ERR_IMAGE, "JPEG DQT segment is too short");
        for (int i = 0; i < 64; i++)
            d->qt[tq][jpeg_natural_order[i]] = (uint16_t)(pq ? load_be16(p + 1 + 2 * i) : p[1 + i]);
        d->qt_defined[tq] = true;
        p += need;
        len -= need;
    }
    return ABC_OK;
}

static abc_status jpeg_parse_dht(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    while (len > 16) {
        int index = p[0];
        uint8_t bits[17] = {0};
        int count = 0;
        for (int i = 1; i <= 16; i++) count += bits[i] = p[i];
        p += 17;
        len -= 17;
        if (count > 256 || (size_t)count > len) return fail(err, ABC_ERR_IMAGE, "JPEG Huffman table is invalid (%d codes)", count);
        int slot = index & 0x0F, cls = index >> 4;
        if (cls > 1 || slot > 3) return fail(err, ABC_ERR_IMAGE, "JPEG Huffman table index 0x%02x is out of range", index);
        jpeg_huff_build(cls ? &d->ac[slot] : &d->dc[slot], bits, p, count);
        p += count;
        len -= (size_t)count;
    }
    if (len != 0) return fail(err, ABC_ERR_IMAGE, "JPEG DHT segment has a bad length");
    return ABC_OK;
}

static abc_status jpeg_parse_sof(jpeg_decoder *d, int marker, const uint8_t *p, size_t len,
                                 const image_limits *lim, abc_error *err) {
    if (d->have_frame) return fail(err, ABC_ERR_IMAGE, "JPEG has more than one frame header (SOF)");
    if (len < 6) return fail(err, ABC_ERR_IMAGE, "JPEG SOF segment is too short");
    int precision = p[0], nc = p[5];
    d->height = (int)load_be16(p + 1);
    d->width = (int)load_be16(p + 3);
    if (precision != 8)
        return fail(err, ABC_ERR_UNSUPPORTED, "%d-bit JPEG is not supported (only 8-bit samples)", precision);
    if (len != 6 + 3 * (size_t)nc) return fail(err, ABC_ERR_IMAGE, "JPEG SOF segment has a bad length");
    if (nc != 1 && nc != 3 && nc != 4)
        return fail(err, nc == 0 ? ABC_ERR_IMAGE : ABC_ERR_UNSUPPORTED, "JPEG with %d components is not supported", nc);
    if (d->height == 0)
        return fail(err, ABC_ERR_UNSUPPORTED, "JPEG with the height in a DNL marker (height 0) is not supported");
    abc_status st = image_check_size((uint64_t)d->width, (uint64_t)d->height, lim, "JPEG", err);
    if (st != ABC_OK) return st;
    d->progressive = marker == 0xC2;
    d->ncomp = nc;
    d->hmax = d->vmax = 1;
    for (int i = 0; i < nc; i++) {
        jpeg_component *c = &d->comp[i];
        const uint8_t *q = p + 6 + 3 * i;
        c->id = q[0];
        c->h = q[1] >> 4;
        c->v = q[1] & 15;
        c->tq = q[2];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return fail(err, ABC_ERR_IMAGE, "JPEG component %d has invalid sampling factors %dx%d", i, c->h, c->v);
        if (c->tq > 3) return fail(err, ABC_ERR_IMAGE, "JPEG component %d uses quantization table %d", i, c->tq);
        for (int j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return fail(err, ABC_ERR_IMAGE, "JPEG has two components with id %d", c->id);
        d->hmax = MAX(d->hmax, c->h);
        d->vmax = MAX(d->vmax, c->v);
    }
    d->mcux = (d->width + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->height + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < nc; i++) {
        jpeg_component *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return fail(err, ABC_ERR_UNSUPPORTED, "JPEG sampling factors with a fractional ratio are not supported");
        c->dw = (int)(((int64_t)d->width * c->h + d->hmax - 1) / d->hmax);
        c->dh = (int)(((int64_t)d->height * c->v + d->vmax - 1) / d->vmax);
        c->wb = (c->dw + 7) / 8;
        c->hb = (c->dh + 7) / 8;
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        for (int k = 0; k < 64; k++) c->coef_bits[k] = -1;
        size_t n;
        if (!mul_size((size_t)c->bw * (size_t)c->bh, 64, &n))
            return fail(err, ABC_ERR_TOO_LARGE, "JPEG is too large");
        c->coef = xcalloc(n, sizeof(int16_t));
        if (!c->coef) return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG coefficients");
    }
    d->have_frame = true;
    return ABC_OK;
}

static abc_status jpeg_parse_sos(jpeg_decoder *d, const uint8_t *p, size_t len, abc_error *err) {
    if (!d->have_frame) return fail(err, ABC_ERR_IMAGE, "JPEG scan (SOS) before the frame header (SOF)");
    if (len < 1) return fail(err, ABC_ERR_IMAGE, "JPEG SOS segment is too short");
    int ns = p[0];
    if (ns < 1 || ns > 4 || len != 4 + 2 * (size_t)ns) return fail(err, ABC_ERR_IMAGE, "JPEG SOS segment is invalid");
    bool used[4] = {false};
    int blocks = 0;
    for (int i = 0; i < ns; i++) {
        int id = p[1 + 2 * i], tables = p[2 + 2 * i], ci;
        for (ci = 0; ci < d->ncomp; ci++)
            if (d->comp[ci].id == id && !used[ci]) break;
        if (ci == d->ncomp) return fail(err, ABC_ERR_IMAGE, "JPEG scan names an unknown component %d", id);
        used[ci] = true;
        d->scan_comp[i] = ci;
        d->comp[ci].dc_tbl = tables >> 4;
        d->comp[ci].ac_tbl = tables & 15;
        blocks += d->comp[ci].h * d->comp[ci].v;
    }
    d->scan_ncomp = ns;
    if (ns > 1 && blocks > JPEG_MAX_BLOCKS_IN_MCU)
        return fail(err, ABC_ERR_IMAGE, "JPEG scan has %d blocks per MCU (at most %d)", blocks, JPEG_MAX_BLOCKS_IN_MCU);
    const uint8_t *q = p + 1 + 2 * ns;
    d->ss = q[0];
    d->se = q[1];
    d->ah = q[2] >> 4;
    d->al = q[2] & 15;
    bool need_dc = true, need_ac = true;
    if (d->progressive) {
        bool dc_band = d->ss == 0, bad = false;
        if (dc_band) bad = d->se != 0;
        else bad = d->ss > d->se || d->se > 63 || ns != 1;
        if (d->ah != 0 && d->al != d->ah - 1) bad = true;
        if (d->al > 13) bad = true;
        if (bad) return fail(err, ABC_ERR_IMAGE, "JPEG progressive scan parameters are invalid (Ss=%d Se=%d Ah=%d Al=%d)",
                             d->ss, d->se, d->ah, d->al);
        need_dc = dc_band && d->ah == 0;
        need_ac = !dc_band;
        for (int i = 0; i < ns; i++) {
            jpeg_component *c = &d->comp[d->scan_comp[i]];
            for (int k = d->ss; k <= d->se; k++) c->coef_bits[k] = d->al;
        }
    }
    for (int i = 0; i < ns; i++) {
        jpeg_component *c = &d->comp[d->scan_comp[i]];
        if (need_dc) {
            if (c->dc_tbl > 3 || !d->dc[c->dc_tbl].defined)
                return fail(err, ABC_ERR_IMAGE, "JPEG scan uses an undefined DC Huffman table %d", c->dc_tbl);
            const jpeg_huff *t = &d->dc[c->dc_tbl];
            if (!t->valid || t->max_symbol > 15)
                return fail(err, ABC_ERR_IMAGE, "JPEG DC Huffman table %d is invalid", c->dc_tbl);
        }
        if (need_ac) {
            if (c->ac_tbl > 3 || !d->ac[c->ac_tbl].defined)
                return fail(err, ABC_ERR_IMAGE, "JPEG scan uses an undefined AC Huffman table %d", c->ac_tbl);
            if (!d->ac[c->ac_tbl].valid) return fail(err, ABC_ERR_IMAGE, "JPEG AC Huffman table %d is invalid", c->ac_tbl);
        }
        if (!c->quant_latched) {
            if (!d->qt_defined[c->tq])
                return fail(err, ABC_ERR_IMAGE, "JPEG component uses an undefined quantization table %d", c->tq);
            memcpy(c->quant, d->qt[c->tq], sizeof c->quant);
            c->quant_latched = true;
        }
        c->last_dc = 0;
    }
    return ABC_OK;
}

/* libjpeg's process_restart + read_restart_marker + resync_to_restart. */
static abc_status jpeg_process_restart(jpeg_decoder *d, abc_error *err) {
    jpeg_bits *b = &d->bits;
    b->buf = 0;
    b->nbits = 0;
    int marker = b->marker;
    d->pos = b->pos;
    if (!marker && !jpeg_next_marker(d, &marker)) return jpeg_truncated(err);
    int want = 0xD0 + d->next_restart;
    for (;;) {
        if (marker == want) {
            marker = 0; /* consumed */
            break;
        }
        int action;
        if (marker < 0xC0) action = 2;
        else if (marker < 0xD0 || marker > 0xD7) action = 3;
        else if (marker == 0xD0 + ((d->next_restart + 1) & 7) || marker == 0xD0 + ((d->next_restart + 2) & 7)) action = 3;
        else if (marker == 0xD0 + ((d->next_restart - 1) & 7) || marker == 0xD0 + ((d->next_restart - 2) & 7)) action = 2;
        else action = 1;
        if (action == 1) {
            marker = 0;
            break;
        }
        if (action == 3) break; /* leave it: the next segment reads as empty */
        if (!jpeg_next_marker(d, &marker)) return jpeg_truncated(err);
    }
    b->marker = marker;
    b->pos = d->pos;
    d->next_restart = (d->next_restart + 1) & 7;
    for (int i = 0; i < d->ncomp; i++) d->comp[i].last_dc = 0;
    d->eobrun = 0;
    d->restarts_to_go = d->restart_interval;
    if (!marker) b->insufficient = false;
    return ABC_OK;
}

static inline void jpeg_add_dc(jpeg_decoder *d, jpeg_component *c, int diff) {
    int64_t v = (int64_t)c->last_dc + diff;
    if (v > INT_MAX || v < INT_MIN) d->dc_overflow = true;
    else c->last_dc = (int)v;
}

static void jpeg_block_sequential(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    const jpeg_huff *dc = &d->dc[c->dc_tbl], *ac = &d->ac[c->ac_tbl];
    int s = jpeg_huff_decode(b, dc);
    jpeg_add_dc(d, c, s ? jpeg_extend(jpeg_get_bits(b, s), s) : 0);
    blk[0] = (int16_t)c->last_dc;
    for (int k = 1; k < 64; k++) {
        int rs = jpeg_huff_decode(b, ac), r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            blk[jpeg_natural_order[k]] = (int16_t)jpeg_extend(jpeg_get_bits(b, s), s);
        } else {
            if (r != 15) break;
            k += 15;
        }
    }
}

static void jpeg_block_dc_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    int s = jpeg_huff_decode(b, &d->dc[c->dc_tbl]);
    jpeg_add_dc(d, c, s ? jpeg_extend(jpeg_get_bits(b, s), s) : 0);
    blk[0] = (int16_t)((unsigned)c->last_dc << d->al);
}

static void jpeg_block_dc_refine(jpeg_decoder *d, int16_t *blk) {
    if (jpeg_get_bits(&d->bits, 1)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
}

static void jpeg_block_ac_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    if (d->eobrun > 0) {
        d->eobrun--;
        return;
    }
    const jpeg_huff *ac = &d->ac[c->ac_tbl];
    for (int k = d->ss; k <= d->se; k++) {
        int rs = jpeg_huff_decode(b, ac), r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            blk[jpeg_natural_order[k]] = (int16_t)((unsigned)jpeg_extend(jpeg_get_bits(b, s), s) << d->al);
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = 1 << r;
            if (r) d->eobrun += (int)jpeg_get_bits(b, r);
            d->eobrun--;
            break;
        }
    }
}

/* Adds a correction bit to an already-nonzero coefficient (sign-preserving), as jdphuff.c. */
static inline void jpeg_refine_coef(jpeg_bits *b, int16_t *coef, int p1) {
    if (jpeg_get_bits(b, 1) && (*coef & p1) == 0) *coef = (int16_t)(*coef >= 0 ? *coef + p1 : *coef - p1);
}

static void jpeg_block_ac_refine(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    jpeg_bits *b = &d->bits;
    int p1 = 1 << d->al, k = d->ss, se = d->se;
    if (d->eobrun == 0) {
        const jpeg_huff *ac = &d->ac[c->ac_tbl];
        for (; k <= se; k++) {
            int rs = jpeg_huff_decode(b, ac), r = rs >> 4, s = rs & 15, value = 0;
            if (s) {
                value = jpeg_get_bits(b, 1) ? p1 : -p1; /* s != 1 is bad data; libjpeg goes on */
            } else if (r != 15) {
                d->eobrun = 1 << r;
                if (r) d->eobrun += (int)jpeg_get_bits(b, r);
                break;
            }
            do { /* skip r zero coefficients, refining the nonzero ones on the way */
                int16_t *coef = blk + jpeg_natural_order[k];
                if (*coef != 0) jpeg_refine_coef(b, coef, p1);
                else if (--r < 0) break;
                k++;
            } while (k <= se);
            if (value) blk[jpeg_natural_order[k]] = (int16_t)value;
        }
    }
    if (d->eobrun > 0) {
        for (; k <= se; k++) {
            int16_t *coef = blk + jpeg_natural_order[k];
            if (*coef != 0) jpeg_refine_coef(b, coef, p1);
        }
        d->eobrun--;
    }
}

static void jpeg_decode_block(jpeg_decoder *d, jpeg_component *c, int16_t *blk) {
    if (!d->progressive) jpeg_block_sequential(d, c, blk);
    else if (d->ss == 0 && d->ah == 0) jpeg_block_dc_first(d, c, blk);
    else if (d->ss == 0) jpeg_block_dc_refine(d, blk);
    else if (d->ah == 0) jpeg_block_ac_first(d, c, blk);
    else jpeg_block_ac_refine(d, c, blk);
}

/* Decodes the entropy-coded data of the current scan into the coefficient arrays. */
static abc_status jpeg_decode_scan(jpeg_decoder *d, abc_error *err) {
    jpeg_bits *b = &d->bits;
    *b = (jpeg_bits){d->data, d->size, d->pos, 0, 0, 0, false, false};
    d->eobrun = 0;
    d->restarts_to_go = d->restart_interval;
    d->next_restart = 0;
    bool single = d->scan_ncomp == 1;
    jpeg_component *c0 = &d->comp[d->scan_comp[0]];
    int rows = single ? c0->hb : d->mcuy, cols = single ? c0->wb : d->mcux;
    for (int my = 0; my < rows; my++) {
        for (int mx = 0; mx < cols; mx++) {
            if (d->restart_interval && d->restarts_to_go == 0) {
                abc_status st = jpeg_process_restart(d, err);
                if (st != ABC_OK) return st;
            }
            /* As libjpeg: once data ran out (a marker cut the segment), the MCUs up to the next restart
             * are left as they are; the MCU that ran out completes with zero bits. */
            if (!b->insufficient) {
                if (single) {
                    jpeg_decode_block(d, c0, c0->coef + ((size_t)my * c0->bw + mx) * 64);
                } else {
                    for (int i = 0; i < d->scan_ncomp; i++) {
                        jpeg_component *c = &d->comp[d->scan_comp[i]];
                        for (int by = 0; by < c->v; by++)
                            for (int bx = 0; bx < c->h; bx++)
                                jpeg_decode_block(d, c, c->coef + ((size_t)(my * c->v + by) * c->bw +
                                                                   (size_t)(mx * c->h + bx)) * 64);
                    }
                }
            }
            if (d->restart_interval) d->restarts_to_go--;
            if (b->hit_eof && b->insufficient) return jpeg_truncated(err);
            if (d->dc_overflow) return fail(err, ABC_ERR_IMAGE, "JPEG DC coefficient overflows (corrupt data)");
        }
    }
    if (b->hit_eof) return jpeg_truncated(err);
    d->pos = b->pos;
    return ABC_OK;
}

/* ---- JPEG: accurate integer inverse DCT (libjpeg's jidctint.c "islow", 13-bit constants) ---- */

#define IDCT_CONST_BITS 13
#define IDCT_PASS1_BITS 2
#define IDCT_DESCALE(x, n) (((x) + ((int64_t)1 << ((n)-1))) >> (n))

static void jpeg_idct_islow(const int16_t *coef, const uint16_t *quant, uint8_t *out, size_t stride,
                            const uint8_t *range) {
    int ws[64];
    for (int col = 0; col < 8; col++) {
        const int16_t *in = coef + col;
        const uint16_t *q = quant + col;
        int *w = ws + col;
        if (!(in[8] | in[16] | in[24] | in[32] | in[40] | in[48] | in[56])) {
            int dc = (int)(((int64_t)in[0] * q[0]) * (1 << IDCT_PASS1_BITS));
            for (int r = 0; r < 8; r++) w[8 * r] = dc;
            continue;
        }
        int64_t z2 = (int64_t)in[16] * q[16], z3 = (int64_t)in[48] * q[48];
        int64_t z1 = (z2 + z3) * 4433;
        int64_t tmp2 = z1 + z3 * -15137, tmp3 = z1 + z2 * 6270;
        z2 = (int64_t)in[0] * q[0];
        z3 = (int64_t)in[32] * q[32];
        int64_t tmp0 = (z2 + z3) * (1 << IDCT_CONST_BITS), tmp1 = (z2 - z3) * (1 << IDCT_CONST_BITS);
        int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        tmp0 = (int64_t)in[56] * q[56];
        tmp1 = (int64_t)in[40] * q[40];
        tmp2 = (int64_t)in[24] * q[24];
        tmp3 = (int64_t)in[8] * q[8];
        z1 = tmp0 + tmp3;
        z2 = tmp1 + tmp2;
        z3 = tmp0 + tmp2;
        int64_t z4 = tmp1 + tmp3, z5 = (z3 + z4) * 9633;
        tmp0 *= 2446;
        tmp1 *= 16819;
        tmp2 *= 25172;
        tmp3 *= 12299;
        z1 *= -7373;
        z2 *= -20995;
        z3 = z3 * -16069 + z5;
        z4 = z4 * -3196 + z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;
        const int sh = IDCT_CONST_BITS - IDCT_PASS1_BITS;
        w[0] = (int)IDCT_DESCALE(tmp10 + tmp3, sh);
        w[56] = (int)IDCT_DESCALE(tmp10 - tmp3, sh);
        w[8] = (int)IDCT_DESCALE(tmp11 + tmp2, sh);
        w[48] = (int)IDCT_DESCALE(tmp11 - tmp2, sh);
        w[16] = (int)IDCT_DESCALE(tmp12 + tmp1, sh);
        w[40] = (int)IDCT_DESCALE(tmp12 - tmp1, sh);
        w[24] = (int)IDCT_DESCALE(tmp13 + tmp0, sh);
        w[32] = (int)IDCT_DESCALE(tmp13 - tmp0, sh);
    }
    for (int row = 0; row < 8; row++) {
        const int *w = ws + 8 * row;
        uint8_t *o = out + (size_t)row * stride;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            uint8_t v = range[IDCT_DESCALE((int64_t)w[0], IDCT_PASS1_BITS + 3) & 1023];
            memset(o, v, 8);
            continue;
        }
        int64_t z2 = w[2], z3 = w[6];
        int64_t z1 = (z2 + z3) * 4433;
        int64_t tmp2 = z1 + z3 * -15137, tmp3 = z1 + z2 * 6270;
        int64_t tmp0 = ((int64_t)w[0] + w[4]) * (1 << IDCT_CONST_BITS);
        int64_t tmp1 = ((int64_t)w[0] - w[4]) * (1 << IDCT_CONST_BITS);
        int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        tmp0 = w[7];
        tmp1 = w[5];
        tmp2 = w[3];
        tmp3 = w[1];
        z1 = tmp0 + tmp3;
        z2 = tmp1 + tmp2;
        z3 = tmp0 + tmp2;
        int64_t z4 = tmp1 + tmp3, z5 = (z3 + z4) * 9633;
        tmp0 *= 2446;
        tmp1 *= 16819;
        tmp2 *= 25172;
        tmp3 *= 12299;
        z1 *= -7373;
        z2 *= -20995;
        z3 = z3 * -16069 + z5;
        z4 = z4 * -3196 + z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;
        const int sh = IDCT_CONST_BITS + IDCT_PASS1_BITS + 3;
        o[0] = range[IDCT_DESCALE(tmp10 + tmp3, sh) & 1023];
        o[7] = range[IDCT_DESCALE(tmp10 - tmp3, sh) & 1023];
        o[1] = range[IDCT_DESCALE(tmp11 + tmp2, sh) & 1023];
        o[6] = range[IDCT_DESCALE(tmp11 - tmp2, sh) & 1023];
        o[2] = range[IDCT_DESCALE(tmp12 + tmp1, sh) & 1023];
        o[5] = range[IDCT_DESCALE(tmp12 - tmp1, sh) & 1023];
        o[3] = range[IDCT_DESCALE(tmp13 + tmp0, sh) & 1023];
        o[4] = range[IDCT_DESCALE(tmp13 - tmp0, sh) & 1023];
    }
}

/* libjpeg's table: x + 128 clamped to [0, 255] for |x| < 512, wrapping beyond (only corrupt data). */
static void jpeg_init_idct_range(uint8_t range[1024]) {
    for (int m = 0; m < 1024; m++) range[m] = (uint8_t)(m < 128 ? m + 128 : m < 512 ? 255 : m < 896 ? 0 : m - 896);
}

/* ---- JPEG: upsampling (libjpeg-turbo jdsample.c with do_fancy_upsampling) ---- */

enum { UP_FULL, UP_H2V1_FANCY, UP_H1V2_FANCY, UP_H2V2_FANCY, UP_REPLICATE };

typedef struct {
    int mode, rh, rv;
} jpeg_upsampler;

static jpeg_upsampler jpeg_choose_upsampler(const jpeg_decoder *d, const jpeg_component *c) {
    jpeg_upsampler u = {UP_REPLICATE, d->hmax / c->h, d->vmax / c->v};
    if (u.rh == 1 && u.rv == 1) u.mode = UP_FULL;
    else if (u.rh == 2 && u.rv == 1 && c->dw > 2) u.mode = UP_H2V1_FANCY;
    else if (u.rh == 1 && u.rv == 2) u.mode = UP_H1V2_FANCY;
    else if (u.rh == 2 && u.rv == 2 && c->dw > 2) u.mode = UP_H2V2_FANCY;
    return u;
}

/* Triangle filter 3/4·nearest + 1/4·next along a row, with libjpeg's alternating rounding. */
static void jpeg_h2v1_fancy(const uint8_t *in, int n, uint8_t *out) {
    out[0] = in[0];
    out[1] = (uint8_t)((in[0] * 3 + in[1] + 2) >> 2);
    for (int x = 1; x < n - 1; x++) {
        int v = in[x] * 3;
        out[2 * x] = (uint8_t)((v + in[x - 1] + 1) >> 2);
        out[2 * x + 1] = (uint8_t)((v + in[x + 1] + 2) >> 2);
    }
    out[2 * n - 2] = (uint8_t)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
    out[2 * n - 1] = in[n - 1];
}

static void jpeg_h2v2_fancy(const uint8_t *near, const uint8_t *far, int n, uint8_t *out) {
    int this_sum = near[0] * 3 + far[0], next_sum = near[1] * 3 + far[1], last_sum;
    out[0] = (uint8_t)((this_sum * 4 + 8) >> 4);
    out[1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
    last_sum = this_sum;
    this_sum = next_sum;
    for (int x = 1; x < n - 1; x++) {
        next_sum = near[x + 1] * 3 + far[x + 1];
        out[2 * x] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
        out[2 * x + 1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
        last_sum = this_sum;
        this_sum = next_sum;
    }
    out[2 * n - 2] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
    out[2 * n - 1] = (uint8_t)((this_sum * 4 + 7) >> 4);
}

/* Returns output row y of component c at full resolution (≥ image width samples). The rows above the
 * first and below the last are the edge rows, as libjpeg's context rows are. */
static const uint8_t *jpeg_upsample_row(const jpeg_component *c, jpeg_upsampler u, int y, int width, uint8_t *buf) {
    size_t stride = (size_t)c->bw * 8;
    const uint8_t *plane = c->plane;
    switch (u.mode) {
    case UP_FULL: return plane + (size_t)y * stride;
    case UP_H2V1_FANCY: jpeg_h2v1_fancy(plane + (size_t)y * stride, c->dw, buf); return buf;
    case UP_H1V2_FANCY:
    case UP_H2V2_FANCY: {
        int iy = y >> 1, far_y = (y & 1) ? MIN(iy + 1, c->dh - 1) : MAX(iy - 1, 0);
        const uint8_t *near = plane + (size_t)iy * stride, *far = plane + (size_t)far_y * stride;
        if (u.mode == UP_H2V2_FANCY) {
            jpeg_h2v2_fancy(near, far, c->dw, buf);
        } else {
            int bias = (y & 1) ? 2 : 1;
            for (int x = 0; x < c->dw; x++) buf[x] = (uint8_t)((near[x] * 3 + far[x] + bias) >> 2);
        }
        return buf;
    }
    default: {
        const uint8_t *in = plane + (size_t)(y / u.rv) * stride;
        if (u.rh == 1) return in;
        for (int x = 0; x < width; x++) buf[x] = in[x / u.rh];
        return buf;
    }
    }
}

/* ---- JPEG: colour conversion (libjpeg jdcolor.c tables, then Pillow's CMYK handling) ---- */

typedef struct {
    int cr_r[256], cb_b[256];
    int32_t cr_g[256], cb_g[256];
} jpeg_ycc_tables;

static void jpeg_build_ycc_tables(jpeg_ycc_tables *t) {
    const int32_t one_half = 1 << 15;
    for (int i = 0; i < 256; i++) {
        int32_t x = i - 128;
        t->cr_r[i] = (int)((91881 * x + one_half) >> 16);  /* FIX(1.40200) */
        t->cb_b[i] = (int)((116130 * x + one_half) >> 16); /* FIX(1.77200) */
        t->cr_g[i] = -46802 * x;                           /* -FIX(0.71414) */
        t->cb_g[i] = -22554 * x + one_half;                /* -FIX(0.34414) */
    }
}

static inline uint8_t clamp_u8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* Pillow's cmyk2rgb after its "CMYK;I" (Adobe, inverted) unpacking of libjpeg's CMYK output. */
static inline uint8_t pillow_cmyk_channel(int ink_lib, int k_lib) {
    int ink = 255 - ink_lib, nk = k_lib; /* Pillow's values: ink = 255 - lib, nk = 255 - (255 - k_lib) */
    int tmp = ink * nk + 128;
    return clamp_u8(nk - (((tmp >> 8) + tmp) >> 8));
}

typedef enum { JCS_GREY, JCS_YCC, JCS_RGB, JCS_CMYK, JCS_YCCK } jpeg_colorspace;

/* libjpeg's default_decompress_parms: JFIF beats Adobe, then component ids decide. */
static jpeg_colorspace jpeg_guess_colorspace(const jpeg_decoder *d) {
    if (d->ncomp == 1) return JCS_GREY;
    if (d->ncomp == 3) {
        if (d->saw_jfif) return JCS_YCC;
        if (d->saw_adobe) return d->adobe_transform == 0 ? JCS_RGB : JCS_YCC;
        if (d->comp[0].id == 82 && d->comp[1].id == 71 && d->comp[2].id == 66) return JCS_RGB;
        return JCS_YCC;
    }
    if (d->saw_adobe) return d->adobe_transform == 0 ? JCS_CMYK : JCS_YCCK;
    return JCS_CMYK;
}

/* libjpeg-turbo smooths blocks of progressive images whose low AC coefficients are not fully refined
 * (jdcoefct.c smoothing_ok); we do not implement that filter, so such files are refused. */
static bool jpeg_needs_block_smoothing(const jpeg_decoder *d) {
    static const int positions[10] = {0, 1, 8, 16, 9, 2, 3, 10, 17, 24}; /* first 10 in zigzag order */
    if (!d->progressive) return false;
    bool useful = false;
    for (int i = 0; i < d->ncomp; i++) {
        const jpeg_component *c = &d->comp[i];
        if (!c->quant_latched) return false;
        for (int k = 0; k < 10; k++)
            if (c->quant[positions[k]] == 0) return false;
        if (c->coef_bits[0] < 0) return false;
        for (int k = 1; k < 10; k++)
            if (c->coef_bits[k] != 0) useful = true;
    }
    return useful;
}

static abc_status jpeg_output(jpeg_decoder *d, abc_image *out, abc_error *err) {
    if (jpeg_needs_block_smoothing(d))
        return fail(err, ABC_ERR_UNSUPPORTED, "progressive JPEG with incomplete refinement scans needs libjpeg's "
                                              "block smoothing, which is not supported");
    /* IDCT every block that holds samples into per-component planes. */
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8, n;
        if (!mul_size(stride, (size_t)c->bh * 8, &n)) return fail(err, ABC_ERR_TOO_LARGE, "JPEG is too large");
        c->plane = xmalloc(n);
        if (!c->plane) return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG samples");
        for (int by = 0; by < c->hb; by++)
            for (int bx = 0; bx < c->wb; bx++)
                jpeg_idct_islow(c->coef + ((size_t)by * c->bw + bx) * 64, c->quant,
                                c->plane + (size_t)by * 8 * stride + (size_t)bx * 8, stride, d->idct_range);
        free(c->coef);
        c->coef = NULL;
    }
    abc_status st = image_alloc(out, (uint64_t)d->width, (uint64_t)d->height, err);
    if (st != ABC_OK) return st;
    int width = d->width;
    /* wide enough for any upsampled row: whole MCUs at full resolution */
    size_t buf_len = (size_t)d->mcux * 8 * (size_t)d->hmax + 16;
    uint8_t *bufs = xmalloc(buf_len * 4);
    jpeg_ycc_tables *t = xmalloc(sizeof *t);
    if (!bufs || !t) {
        free(bufs);
        free(t);
        free(out->rgb);
        out->rgb = NULL;
        return fail(err, ABC_ERR_NOMEM, "out of memory for JPEG rows");
    }
    jpeg_build_ycc_tables(t);
    jpeg_upsampler up[4];
    for (int i = 0; i < d->ncomp; i++) up[i] = jpeg_choose_upsampler(d, &d->comp[i]);
    jpeg_colorspace cs = jpeg_guess_colorspace(d);
    for (int y = 0; y < d->height; y++) {
        const uint8_t *row[4];
        for (int i = 0; i < d->ncomp; i++) row[i] = jpeg_upsample_row(&d->comp[i], up[i], y, width, bufs + (size_t)i * buf_len);
        uint8_t *o = out->rgb + (size_t)y * (size_t)width * 3;
        switch (cs) {
        case JCS_GREY:
            for (int x = 0; x < width; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[0][x];
            break;
        case JCS_RGB:
            for (int x = 0; x < width; x++) {
                o[3 * x] = row[0][x];
                o[3 * x + 1] = row[1][x];
                o[3 * x + 2] = row[2][x];
            }
            break;
        case JCS_YCC:
            for (int x = 0; x < width; x++) {
                int yy = row[0][x], cb = row[1][x], cr = row[2][x];
                o[3 * x] = clamp_u8(yy + t->cr_r[cr]);
                o[3 * x + 1] = clamp_u8(yy + (int)((t->cb_g[cb] + t->cr_g[cr]) >> 16));
                o[3 * x + 2] = clamp_u8(yy + t->cb_b[cb]);
            }
            break;
        case JCS_CMYK:
        case JCS_YCCK:
            for (int x = 0; x < width; x++) {
                int c0 = row[0][x], c1 = row[1][x], c2 = row[2][x], k = row[3][x];
                if (cs == JCS_YCCK) { /* jdcolor.c ycck_cmyk_convert */
                    int yy = c0, cb = c1, cr = c2;
                    c0 = clamp_u8(255 - (yy + t->cr_r[cr]));
                    c1 = clamp_u8(255 - (yy + (int)((t->cb_g[cb] + t->cr_g[cr]) >> 16)));
                    c2 = clamp_u8(255 - (yy + t->cb_b[cb]));
                }
                o[3 * x] = pillow_cmyk_channel(c0, k);
                o[3 * x + 1] = pillow_cmyk_channel(c1, k);
                o[3 * x + 2] = pillow_cmyk_channel(c2, k);
            }
            break;
        }
    }
    free(bufs);
    free(t);
    return ABC_OK;
}

static void jpeg_parse_app(jpeg_decoder *d, int marker, const uint8_t *p, size_t len) {
    if (marker == 0xE0 && len >= 14 && memcmp(p, "JFIF\0", 5) == 0) d->saw_jfif = true;
    if (marker == 0xEE && len >= 12 && memcmp(p, "Adobe", 5) == 0) {
        d->saw_adobe = true;
        d->adobe_transform = p[11];
    }
}

static const char *jpeg_sof_name(int marker) {
    switch (marker) {
    case 0xC3: return "lossless JPEG";
    case 0xC5: case 0xC6: case 0xC7: case 0xCD: case 0xCE: case 0xCF: case 0xDE: return "hierarchical JPEG";
    case 0xC9: case 0xCA: case 0xCB: return "arithmetic-coded JPEG";
    default: return NULL;
    }
}

static void jpeg_decoder_free(jpeg_decoder *d) {
    for (int i = 0; i < 4; i++) {
        free(d->comp[i].coef);
        free(d->comp[i].plane);
    }
    free(d);
}

static abc_status jpeg_decode(const uint8_t *data, size_t size, const image_limits *lim, abc_image *out, abc_error *err) {
    jpeg_decoder *d = xcalloc(1, sizeof *d);
    if (!d) return fail(err, ABC_ERR_NOMEM, "out of memory for the JPEG decoder");
    d->data = data;
    d->size = size;
    d->pos = 2; /* after SOI */
    jpeg_std_huff_tables(d->dc, d->ac);
    jpeg_init_idct_range(d->idct_range);
    abc_status st = ABC_OK;
    /* complete: a sequential first scan with every component is the whole image, and libjpeg outputs it
     * right away (single-pass mode). Pillow then reads on to EOI: running out of file there is fine,
     * but a bad marker or another scan is an error, as it is for Pillow. */
    bool done = false, complete = false;
    int pending = 0; /* a marker the entropy decoder already read */
    while (st == ABC_OK && !done) {
        int m = pending;
        pending = 0;
        if (!m && !jpeg_next_marker(d, &m)) {
            if (!complete)
                st = d->scans ? jpeg_truncated(err) : fail(err, ABC_ERR_IMAGE, "JPEG file is truncated (no image data)");
            break;
        }
        if (m == 0xD9) { /* EOI */
            if (!d->scans) st = fail(err, ABC_ERR_IMAGE, "JPEG has no image data (EOI before any scan)");
            done = true;
            break;
        }
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue; /* stray RSTn or TEM: no segment */
        if (m == 0xD8) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG has a second SOI marker");
            break;
        }
        const char *unsupported = jpeg_sof_name(m);
        if (unsupported) {
            st = fail(err, ABC_ERR_UNSUPPORTED, "%s is not supported (only baseline and progressive Huffman)", unsupported);
            break;
        }
        if (m == 0xC8 || m == 0xDF || (m >= 0xF0 && m <= 0xFD) || m < 0xC0) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG has an unknown marker 0x%02X", m);
            break;
        }
        if (size - d->pos < 2) {
            if (!complete) st = jpeg_truncated(err);
            break;
        }
        size_t len = load_be16(data + d->pos);
        if (len < 2) {
            st = fail(err, ABC_ERR_IMAGE, "JPEG marker 0x%02X has an invalid length", m);
            break;
        }
        if (len > size - d->pos) {
            if (!complete) st = jpeg_truncated(err);
            break;
        }
        const uint8_t *p = data + d->pos + 2;
        len -= 2;
        d->pos += len + 2;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            st = jpeg_parse_sof(d, m, p, len, lim, err);
        } else if (m == 0xC4) {
            st = jpeg_parse_dht(d, p, len, err);
        } else if (m == 0xDB) {
            st = jpeg_parse_dqt(d, p, len, err);
        } else if (m == 0xDD) {
            if (len != 2) st = fail(err, ABC_ERR_IMAGE, "JPEG DRI segment has a bad length");
            else d->restart_interval = load_be16(p);
        } else if (m == 0xDA) {
            if (complete) {
                st = fail(err, ABC_ERR_IMAGE, "JPEG has an unexpected scan after the complete image");
                break;
            }
            st = jpeg_parse_sos(d, p, len, err);
            if (st == ABC_OK) st = jpeg_decode_scan(d, err);
            if (st == ABC_OK) {
                pending = d->bits.marker;
                if (d->scans++ == 0 && !d->progressive && d->scan_ncomp == d->ncomp) complete = true;
            }
        } else if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE || m == 0xCC || m == 0xDC) {
            jpeg_parse_app(d, m, p, len); /* APPn, COM, DAC, DNL: nothing else needed */
        }
    }
    if (st == ABC_OK) st = jpeg_output(d, out, err);
    jpeg_decoder_free(d);
    return st;
}

/* ---- 5.5 PPM / PGM (binary P5 and P6, as Pillow's PpmImagePlugin) ---- */

/* Pillow's header tokens: whitespace-separated, '#' comments to the end of the line, at most 10
 * characters; the single whitespace byte after the last token is consumed. */
static bool ppm_token(const uint8_t *data, size_t size, size_t *pos, uint32_t *value) {
    char token[12];
    int n = 0;
    while (*pos < size) {
        uint8_t c = data[(*pos)++];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') {
            if (n) break;
            continue;
        }
        if (c == '#') {
            while (*pos < size && data[*pos] != '\r' && data[*pos] != '\n') (*pos)++;
            if (*pos < size) (*pos)++;
            continue;
        }
        if (n > 10) return false;
        token[n++] = (char)c;
    }
    if (n == 0 || n > 10) return false;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (token[i] < '0' || token[i] > '9') return false;
        v = v * 10 + (uint64_t)(token[i] - '0');
    }
    if (v > UINT32_MAX) return false;
    *value = (uint32_t)v;
    return true;
}

static abc_status ppm_decode(const uint8_t *data, size_t size, const image_limits *lim, abc_image *out, abc_error *err) {
    int channels = data[1] == '6' ? 3 : 1;
    size_t pos = 3;
    uint32_t width, height, maxval;
    if (!ppm_token(data, size, &pos, &width) || !ppm_token(data, size, &pos, &height) ||
        !ppm_token(data, size, &pos, &maxval))
        return fail(err, ABC_ERR_IMAGE, "PPM/PGM header is invalid");
    if (maxval == 0 || maxval > 65535) return fail(err, ABC_ERR_IMAGE, "PPM/PGM maxval %u is not in 1..65535", maxval);
    abc_status st = image_check_size(width, height, lim, "PPM/PGM", err);
    if (st != ABC_OK) return st;
    size_t sample_bytes = maxval > 255 ? 2 : 1, need;
    if (!mul_size((size_t)width * height, (size_t)channels * sample_bytes, &need) || need > size - pos)
        return fail(err, ABC_ERR_IMAGE, "PPM/PGM file is truncated");
    st = image_alloc(out, width, height, err);
    if (st != ABC_OK) return st;
    /* Pillow: maxval 255 is raw; other maxvals scale with round(v / maxval · out_max) (half to even);
     * 16-bit PGM becomes mode "I" (out_max 65535, raw for maxval 65535), which convert("RGB") clips. */
    bool grey_i = channels == 1 && maxval > 255;
    double out_max = grey_i ? 65535.0 : 255.0;
    const uint8_t *p = data + pos;
    size_t n = (size_t)width * height;
    uint8_t lut[256];
    if (sample_bytes == 1)
        for (unsigned v = 0; v < 256; v++) lut[v] = (uint8_t)(maxval == 255 ? v : MIN(255.0, nearbyint((double)v / maxval * 255.0)));
    for (size_t i = 0; i < n; i++) {
        uint8_t *o = out->rgb + 3 * i;
        for (int ch = 0; ch < channels; ch++) {
            unsigned v;
            if (sample_bytes == 1) {
                v = lut[*p++];
            } else {
                unsigned raw = load_be16(p);
                p += 2;
                double scaled = maxval == 65535 && grey_i ? raw : MIN(out_max, nearbyint((double)raw / maxval * out_max));
                v = scaled > 255.0 ? 255 : (unsigned)scaled;
            }
            if (channels == 1) o[0] = o[1] = o[2] = (uint8_t)v;
            else o[ch] = (uint8_t)v;
        }
    }
    return ABC_OK;
}

/* ---- 5.6 dispatch and public API ---- */

static abc_status image_decode_budget(const uint8_t *data, size_t size, size_t max_pixels, size_t max_ratio,
                                      abc_image *out, abc_error *err) {
    if (!data || !out) return fail(err, ABC_ERR_INVALID_ARG, "image_decode: NULL data or output");
    out->width = out->height = 0;
    out->rgb = NULL;
    const image_limits lim = {max_pixels ? max_pixels : ABC_DEFAULT_MAX_IMAGE_PIXELS,
                              max_ratio ? max_ratio : ABC_DEFAULT_MAX_DECODE_RATIO, size};
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return png_decode(data, size, &lim, out, err);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return jpeg_decode(data, size, &lim, out, err);
    if (size >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') &&
        (data[2] == ' ' || data[2] == '\t' || data[2] == '\n' || data[2] == '\v' || data[2] == '\f' || data[2] == '\r'))
        return ppm_decode(data, size, &lim, out, err);
    if (size >= 2 && data[0] == 'P' && data[1] >= '0' && data[1] <= '6')
        return fail(err, ABC_ERR_UNSUPPORTED, "only binary PGM (P5) and PPM (P6) are supported, not P%c", data[1]);
    return fail(err, ABC_ERR_IMAGE, "unknown image format (not PNG, JPEG, PPM or PGM)");
}

static abc_status image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    return image_decode_budget(data, size, max_pixels, 0, out, err);
}

#if !defined(ABC_NO_STDIO)
/* The most bytes an image file may have: 8 per allowed pixel (16-bit RGBA stored without compression)
 * plus 1 MiB of headers and metadata covers every image that could be accepted. */
static uint64_t image_file_bound(size_t max_pixels) {
    const uint64_t pixels = max_pixels; /* 64-bit arithmetic on every target (size_t may be 32 bits) */
    return pixels > (UINT64_MAX - ((uint64_t)1 << 20)) / 8 ? UINT64_MAX : pixels * 8 + ((uint64_t)1 << 20);
}

#endif

#if !defined(ABC_NO_MMAP) && !defined(ABC_NO_STDIO)
/* Opens `path` for reading only if it is a regular file: O_NONBLOCK so that opening a FIFO never waits
 * for a writer; FIFOs, devices, sockets and directories are refused. *size receives the file's size. */
static abc_status open_regular_file(const char *path, const char *what, int *fd_out, uint64_t *size, abc_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fail(err, ABC_ERR_IO, "cannot open '%s' (%s): %s", path, what, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        int e = errno;
        close(fd);
        return fail(err, ABC_ERR_IO, "cannot stat %s '%s': %s", what, path, strerror(e));
    }
    if (!S_ISREG(stt.st_mode)) {
        close(fd);
        return fail(err, ABC_ERR_IO, "%s '%s' is not a regular file (%s)", what, path,
                    S_ISDIR(stt.st_mode) ? "a directory" : S_ISFIFO(stt.st_mode) ? "a FIFO"
                    : S_ISCHR(stt.st_mode) || S_ISBLK(stt.st_mode) ? "a device" : "not a plain file");
    }
    *fd_out = fd;
    *size = (uint64_t)stt.st_size;
    return ABC_OK;
}

/* Reads exactly `size` bytes at offset 0 into buf: a file that shrinks meanwhile is an error (one that
 * grows is read as it was when opened). */
static abc_status read_exact(int fd, uint8_t *buf, size_t size, const char *what, const char *path, abc_error *err) {
    for (size_t done = 0; done < size;) {
        size_t want = MIN(size - done, (size_t)1 << 30);
        ssize_t got = pread(fd, buf + done, want, (off_t)done);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail(err, ABC_ERR_IO, "cannot read %s '%s': %s", what, path, strerror(errno));
        if (got == 0) return fail(err, ABC_ERR_IO, "%s '%s' became shorter while being read", what, path);
        done += (size_t)got;
    }
    return ABC_OK;
}

static abc_status image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                    abc_error *err) {
    out->width = out->height = 0;
    out->rgb = NULL;
    if (max_pixels == 0) max_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    int fd;
    uint64_t size;
    abc_status st = open_regular_file(path, "image", &fd, &size, err);
    if (st != ABC_OK) return st;
    const uint64_t bound = image_file_bound(max_pixels); /* checked before anything is allocated */
    uint8_t *buf = NULL;
    if (size > bound || size > SIZE_MAX)
        st = fail(err, ABC_ERR_TOO_LARGE, "image '%s' is %llu bytes, more than %llu (8 bytes per pixel of the %zu-pixel limit)",
                  path, (unsigned long long)size, (unsigned long long)bound, max_pixels);
    else if (!(buf = xmalloc(size ? (size_t)size : 1)))
        st = fail(err, ABC_ERR_NOMEM, "out of memory reading image '%s' (%llu bytes)", path, (unsigned long long)size);
    else
        st = read_exact(fd, buf, (size_t)size, "image", path, err);
    close(fd);
    if (st == ABC_OK) st = image_decode_budget(buf, (size_t)size, max_pixels, max_ratio, out, err);
    free(buf);
    return st;
}

#elif !defined(ABC_NO_STDIO)
/* Without POSIX files (ABC_NO_MMAP): the C library's stdio, the read bounded as above. */
static abc_status image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                    abc_error *err) {
    out->width = out->height = 0;
    out->rgb = NULL;
    if (max_pixels == 0) max_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    const uint64_t bound = image_file_bound(max_pixels);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, ABC_ERR_IO, "cannot open '%s' (image): %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    abc_status st = ABC_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = ncap > cap ? xrealloc(buf, ncap) : NULL;
            if (!nb) {
                st = fail(err, ABC_ERR_NOMEM, "out of memory reading image '%s'", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if ((uint64_t)len > bound) {
            st = fail(err, ABC_ERR_TOO_LARGE, "image '%s' is more than %llu bytes (8 bytes per pixel of the %zu-pixel limit)",
                      path, (unsigned long long)bound, max_pixels);
            break;
        }
        if (got == 0) {
            if (ferror(f)) st = fail(err, ABC_ERR_IO, "cannot read image '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == ABC_OK) st = image_decode_budget(buf, len, max_pixels, max_ratio, out, err);
    free(buf);
    return st;
}
#else
/* ABC_NO_STDIO: no file system; images come from memory. */
static abc_status image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                    abc_error *err) {
    (void)max_pixels;
    (void)max_ratio;
    out->width = out->height = 0;
    out->rgb = NULL;
    return fail(err, ABC_ERR_UNSUPPORTED, "cannot open image %s: built without file access (ABC_NO_STDIO); "
                "give the image's bytes (abc_image_decode, abc_input.image_data)", path);
}
#endif

abc_status abc_image_decode(const uint8_t *data, size_t size, size_t max_pixels, abc_image *out, abc_error *err) {
    clear_error(err);
    if (!data || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_decode: NULL data or output image");
    return image_decode(data, size, max_pixels, out, err);
}

abc_status abc_image_decode_budget(const uint8_t *data, size_t size, size_t max_pixels, size_t max_ratio,
                                   abc_image *out, abc_error *err) {
    clear_error(err);
    if (!data || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_decode_budget: NULL data or output image");
    return image_decode_budget(data, size, max_pixels, max_ratio, out, err);
}

abc_status abc_image_load(const char *path, size_t max_pixels, abc_image *out, abc_error *err) {
    clear_error(err);
    if (!path || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_load: NULL path or output image");
    return image_load_budget(path, max_pixels, 0, out, err);
}

abc_status abc_image_load_budget(const char *path, size_t max_pixels, size_t max_ratio, abc_image *out,
                                 abc_error *err) {
    clear_error(err);
    if (!path || !out) return fail(err, ABC_ERR_INVALID_ARG, "abc_image_load_budget: NULL path or output image");
    return image_load_budget(path, max_pixels, max_ratio, out, err);
}

void abc_image_free(abc_image *image) {
    if (!image) return;
    free(image->rgb);
    image->rgb = NULL;
    image->width = image->height = 0;
}

/* ================================================================================================
 * 6. Preprocessing: smart_resize, Pillow's bicubic resize, pixel values, patches (docs/image-pipeline.md)
 *
 * Everything here is bit-exact with the Python reference: smart_resize repeats Python's double
 * operations in the same order, the resampler reproduces Pillow's 8-bit fixed-point bicubic
 * (libImaging/Resample.c semantics), and pixel values use the same float32 operations as numpy.
 * ================================================================================================ */

/* Largest image side we accept anywhere in this section: Pillow converts sizes to float, which is
 * exact only up to 2^24, and keeping sides this small makes every int computation below safe. */
#define PREPROCESS_MAX_SIDE (1 << 24)
/* Largest source image we resize (12 GB of RGB); the decoder's own limit is normally far lower. */
#define PREPROCESS_MAX_SOURCE_PIXELS ((int64_t)1 << 32)
/* Upper bound for configured pixel bounds (keeps int64/double arithmetic exact). */
#define PREPROCESS_MAX_CONFIG_PIXELS ((int64_t)1 << 40)
/* qwen_vl_utils' and transformers' MAX_RATIO. */
#define PREPROCESS_MAX_ASPECT_RATIO 200
/* Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the value - 2 for overshoot. */
#define RESAMPLE_PRECISION_BITS 22

/* ---- smart_resize ------------------------------------------------------------------------------ */

/* Python's round() on a float: round half to even, independent of the caller's fenv rounding mode.
 * x - floor(x) is exact for doubles, so the comparison with 0.5 is exact too. */
static double round_half_even(double x) {
    double fl = floor(x);
    double frac = x - fl;
    if (frac > 0.5) return fl + 1.0;
    if (frac < 0.5) return fl;
    return fmod(fl, 2.0) == 0.0 ? fl : fl + 1.0;
}

/* Converts an integral double (a result of floor/ceil/round) to int64 when it is in a sane range. */
static bool integral_to_i64(double x, int64_t *out) {
    if (!(x >= -9.0e15 && x <= 9.0e15)) return false; /* also rejects NaN */
    *out = (int64_t)x;
    return true;
}

static abc_status smart_resize_check_input(int64_t height, int64_t width, int64_t factor,
                                           int64_t min_pixels, int64_t max_pixels, abc_error *err) {
    if (height <= 0 || width <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: image size %lldx%lld is empty",
                    (long long)width, (long long)height);
    if (height > PREPROCESS_MAX_SIDE || width > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_TOO_LARGE, "smart_resize: image size %lldx%lld exceeds %d per side",
                    (long long)width, (long long)height, PREPROCESS_MAX_SIDE);
    if (factor <= 0 || factor > 65536)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: bad factor %lld", (long long)factor);
    if (min_pixels < 0 || max_pixels <= 0 || min_pixels > max_pixels ||
        max_pixels > PREPROCESS_MAX_CONFIG_PIXELS)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: bad pixel bounds [%lld, %lld]",
                    (long long)min_pixels, (long long)max_pixels);
    /* Python: max(h, w) / min(h, w) > MAX_RATIO, a true (double) division of ints. */
    double ratio = (double)MAX(height, width) / (double)MIN(height, width);
    if (ratio > PREPROCESS_MAX_ASPECT_RATIO)
        return fail(err, ABC_ERR_UNSUPPORTED,
                    "image aspect ratio of %lldx%lld is %.1f, more than the %d the model accepts",
                    (long long)width, (long long)height, ratio, PREPROCESS_MAX_ASPECT_RATIO);
    return ABC_OK;
}

/* The result must be a usable image size: positive and within the side limit. */
static abc_status smart_resize_check_output(int64_t height, int64_t width, int64_t out_h,
                                            int64_t out_w, abc_error *err) {
    if (out_h <= 0 || out_w <= 0)
        return fail(err, ABC_ERR_UNSUPPORTED, "smart_resize: image %lldx%lld would shrink to %lldx%lld",
                    (long long)width, (long long)height, (long long)out_w, (long long)out_h);
    if (out_h > PREPROCESS_MAX_SIDE || out_w > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_TOO_LARGE, "smart_resize: image %lldx%lld would grow to %lldx%lld",
                    (long long)width, (long long)height, (long long)out_w, (long long)out_h);
    return ABC_OK;
}

/* transformers' Qwen2-VL smart_resize (vlm2vec, and stage 2 of abc). Same double operations in the
 * same order as the Python source; ints stay ints where Python's do. */
static abc_status smart_resize_transformers(int64_t height, int64_t width, int64_t factor,
                                            int64_t min_pixels, int64_t max_pixels, int64_t *out_h,
                                            int64_t *out_w, abc_error *err) {
    abc_status st = smart_resize_check_input(height, width, factor, min_pixels, max_pixels, err);
    if (st != ABC_OK) return st;
    const double h = (double)height, w = (double)width, f = (double)factor;
    int64_t h_bar = 0, w_bar = 0;
    bool ok = integral_to_i64(round_half_even(h / f), &h_bar) &&
              integral_to_i64(round_half_even(w / f), &w_bar);
    h_bar *= factor;
    w_bar *= factor;
    if (ok && h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)(height * width) / (double)max_pixels);
        ok = integral_to_i64(floor(h / beta / f), &h_bar) && integral_to_i64(floor(w / beta / f), &w_bar);
        h_bar = MAX(factor, h_bar * factor);
        w_bar = MAX(factor, w_bar * factor);
    } else if (ok && h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)(height * width));
        ok = integral_to_i64(ceil(h * beta / f), &h_bar) && integral_to_i64(ceil(w * beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    }
    if (!ok) return fail(err, ABC_ERR_INTERNAL, "smart_resize: arithmetic out of range");
    st = smart_resize_check_output(height, width, h_bar, w_bar, err);
    if (st != ABC_OK) return st;
    *out_h = h_bar;
    *out_w = w_bar;
    return ABC_OK;
}

/* qwen_vl_utils' smart_resize (stage 1 of abc): max(factor, ·) on the rounded size, none when
 * shrinking. */
static abc_status smart_resize_qwen_vl_utils(int64_t height, int64_t width, int64_t factor,
                                             int64_t min_pixels, int64_t max_pixels, int64_t *out_h,
                                             int64_t *out_w, abc_error *err) {
    abc_status st = smart_resize_check_input(height, width, factor, min_pixels, max_pixels, err);
    if (st != ABC_OK) return st;
    const double h = (double)height, w = (double)width, f = (double)factor;
    int64_t h_bar = 0, w_bar = 0;
    bool ok = integral_to_i64(round_half_even(h / f), &h_bar) &&
              integral_to_i64(round_half_even(w / f), &w_bar);
    h_bar = MAX(factor, h_bar * factor);
    w_bar = MAX(factor, w_bar * factor);
    if (ok && h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)(height * width) / (double)max_pixels);
        ok = integral_to_i64(floor(h / beta / f), &h_bar) && integral_to_i64(floor(w / beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    } else if (ok && h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)(height * width));
        ok = integral_to_i64(ceil(h * beta / f), &h_bar) && integral_to_i64(ceil(w * beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    }
    if (!ok) return fail(err, ABC_ERR_INTERNAL, "smart_resize: arithmetic out of range");
    st = smart_resize_check_output(height, width, h_bar, w_bar, err);
    if (st != ABC_OK) return st;
    *out_h = h_bar;
    *out_w = w_bar;
    return ABC_OK;
}

/* ---- Pillow resampling on 8-bit RGB (bicubic for Qwen2-VL, bilinear for Phi-3.5-V) ------------- */

/* Keys' cubic convolution kernel with a = -0.5 (Pillow's BICUBIC, support 2), written with the same
 * operations as Pillow so the doubles agree bit for bit. */
static double bicubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* The triangle kernel (Pillow's BILINEAR, support 1). */
static double bilinear_kernel(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* A Pillow resampling filter: the kernel and its support at scale 1 (Pillow's struct filter). */
typedef struct {
    double (*kernel)(double x);
    double support;
} resample_filter;

static const resample_filter RESAMPLE_BICUBIC = {bicubic_kernel, 2.0};
static const resample_filter RESAMPLE_BILINEAR = {bilinear_kernel, 1.0};

/* The taps of a 1-D resampling from in_size to out_size: output i reads inputs
 * first[i] .. first[i] + count[i] - 1 with fixed-point weights coeffs[i·ksize ..]. */
typedef struct {
    int out_size, ksize;
    int *first, *count;
    int32_t *coeffs;
} resample_taps;

static void resample_taps_free(resample_taps *t) {
    free(t->first);
    free(t->count);
    free(t->coeffs);
    memset(t, 0, sizeof *t);
}

/* Pillow's rounding of a normalised weight to 22-bit fixed point: half away from zero. */
static int32_t weight_to_fixed(double w) {
    double scaled = w * (double)(1 << RESAMPLE_PRECISION_BITS);
    return (int32_t)(w < 0 ? scaled - 0.5 : scaled + 0.5);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full-image box (0, in_size). */
static abc_status resample_taps_init(resample_taps *t, int in_size, int out_size,
                                     const resample_filter *filter, abc_error *err) {
    memset(t, 0, sizeof *t);
    if (in_size <= 0 || out_size <= 0 || in_size > PREPROCESS_MAX_SIDE || out_size > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_INTERNAL, "resample: bad sizes %d -> %d", in_size, out_size);
    /* Pillow takes the box edges as float: (double)(in1 - in0), exact below 2^24. */
    const double scale = (double)(float)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter->support * filterscale;
    const double inv_filterscale = 1.0 / filterscale;
    const double ksize_d = ceil(support) * 2 + 1;
    if (ksize_d > 4.0 * in_size + 5.0 || ksize_d > INT_MAX / 2) /* support <= 2·in_size */
        return fail(err, ABC_ERR_INTERNAL, "resample: kernel too wide");
    const int ksize = (int)ksize_d;
    size_t n_coeffs;
    if (!mul_size((size_t)out_size, (size_t)ksize, &n_coeffs) || n_coeffs > SIZE_MAX / sizeof(int32_t))
        return fail(err, ABC_ERR_TOO_LARGE, "resample: %d -> %d needs too many coefficients", in_size,
                    out_size);
    t->out_size = out_size;
    t->ksize = ksize;
    t->first = xmalloc((size_t)out_size * sizeof *t->first);
    t->count = xmalloc((size_t)out_size * sizeof *t->count);
    t->coeffs = xmalloc(n_coeffs * sizeof *t->coeffs);
    double *w = xmalloc((size_t)ksize * sizeof *w);
    if (!t->first || !t->count || !t->coeffs || !w) {
        free(w);
        resample_taps_free(t);
        return fail(err, ABC_ERR_NOMEM, "out of memory for resampling coefficients (%d -> %d)",
                    in_size, out_size);
    }
    for (int i = 0; i < out_size; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as Pillow's (int) cast */
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        const int n = hi - lo;
        if (n < 1 || n > ksize) { /* cannot happen (n <= 2·support + 1); keeps writes in bounds */
            free(w);
            resample_taps_free(t);
            return fail(err, ABC_ERR_INTERNAL, "resample: bad tap range at %d", i);
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = filter->kernel(((double)(j + lo) - center + 0.5) * inv_filterscale);
            sum += w[j];
        }
        int32_t *k = t->coeffs + (size_t)i * ksize;
        for (int j = 0; j < n; j++) k[j] = weight_to_fixed(sum != 0.0 ? w[j] / sum : w[j]);
        for (int j = n; j < ksize; j++) k[j] = 0;
        t->first[i] = lo;
        t->count[i] = n;
    }
    free(w);
    return ABC_OK;
}

/* Fixed-point accumulator -> 8 bits: Pillow's clip8 (floor division by 2^22, clamped to 0..255),
 * branch-free so that loops over it vectorise. */
static inline uint8_t fixed_to_u8(int32_t acc) {
    int32_t v = MAX(acc, 0) >> RESAMPLE_PRECISION_BITS;
    return (uint8_t)MIN(v, 255);
}

/* Horizontal pass: rows [row0, row0 + n_rows) of `src` (src_w wide) into `dst` (taps.out_size wide,
 * n_rows high), 8-bit clipped as Pillow's intermediate image is. */
static void resample_rows_horizontal(const uint8_t *src, int src_w, int row0, int n_rows,
                                     const resample_taps *taps, uint8_t *dst) {
    const int out_w = taps->out_size, ksize = taps->ksize;
    const int32_t half = 1 << (RESAMPLE_PRECISION_BITS - 1);
    for (int y = 0; y < n_rows; y++) {
        const uint8_t *in = src + (size_t)(row0 + y) * src_w * 3;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        const int32_t *k = taps->coeffs;
        for (int x = 0; x < out_w; x++, k += ksize, out += 3) {
            const uint8_t *p = in + (size_t)taps->first[x] * 3;
            const int n = taps->count[x];
            int32_t r = half, g = half, b = half;
            for (int j = 0; j < n; j++, p += 3) {
                const int32_t kj = k[j];
                r += p[0] * kj;
                g += p[1] * kj;
                b += p[2] * kj;
            }
            out[0] = fixed_to_u8(r);
            out[1] = fixed_to_u8(g);
            out[2] = fixed_to_u8(b);
        }
    }
}

/* Vertical pass: each output row is a weighted sum of whole input rows. Accumulating tap by tap over
 * fixed-size column blocks keeps the accumulators in L1 and gives the compiler constant-trip loops it
 * vectorises even at -O2. `row_shift` maps tap rows into `src`. */
#define RESAMPLE_BLOCK 64
static void resample_rows_vertical(const uint8_t *src, int width, int row_shift,
                                   const resample_taps *taps, uint8_t *dst) {
    const size_t row_bytes = (size_t)width * 3;
    const int32_t half = 1 << (RESAMPLE_PRECISION_BITS - 1);
    for (int y = 0; y < taps->out_size; y++) {
        const int32_t *k = taps->coeffs + (size_t)y * taps->ksize;
        const uint8_t *in = src + (size_t)(taps->first[y] - row_shift) * row_bytes;
        const int n = taps->count[y];
        uint8_t *out = dst + (size_t)y * row_bytes;
        size_t i0 = 0;
        for (; i0 + RESAMPLE_BLOCK <= row_bytes; i0 += RESAMPLE_BLOCK) {
            int32_t acc[RESAMPLE_BLOCK];
            for (int i = 0; i < RESAMPLE_BLOCK; i++) acc[i] = half;
            for (int j = 0; j < n; j++) {
                const uint8_t *row = in + (size_t)j * row_bytes + i0;
                const int32_t kj = k[j];
                for (int i = 0; i < RESAMPLE_BLOCK; i++) acc[i] += row[i] * kj;
            }
            for (int i = 0; i < RESAMPLE_BLOCK; i++) out[i0 + i] = fixed_to_u8(acc[i]);
        }
        for (size_t i = i0; i < row_bytes; i++) { /* the last partial block */
            int32_t acc = half;
            for (int j = 0; j < n; j++) acc += in[(size_t)j * row_bytes + i] * k[j];
            out[i] = fixed_to_u8(acc);
        }
    }
}

/* Resizes 8-bit RGB `src` to out_w × out_h exactly as Pillow's Image.resize(size, filter) with the
 * default box: a plain copy when the size is unchanged; otherwise a horizontal pass (only when the
 * width changes, over only the rows the vertical pass reads) into an 8-bit intermediate, then a
 * vertical pass (only when the height changes). out->rgb is allocated; the caller frees it. */
static abc_status resize_rgb8(const abc_image *src, int out_w, int out_h, const resample_filter *filter,
                              abc_image *out, abc_error *err) {
    if (!src || !out || !src->rgb)
        return fail(err, ABC_ERR_INVALID_ARG, "resize: NULL image");
    out->rgb = NULL;
    out->width = out->height = 0;
    if (src->width <= 0 || src->height <= 0 || out_w <= 0 || out_h <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "resize: empty size (%dx%d -> %dx%d)", src->width,
                    src->height, out_w, out_h);
    if (src->width > PREPROCESS_MAX_SIDE || src->height > PREPROCESS_MAX_SIDE ||
        out_w > PREPROCESS_MAX_SIDE || out_h > PREPROCESS_MAX_SIDE ||
        (int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS ||
        (int64_t)out_w * out_h > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "resize: %dx%d -> %dx%d is too large", src->width,
                    src->height, out_w, out_h);
    size_t out_bytes, src_bytes;
    if (!mul_size((size_t)out_w * 3, (size_t)out_h, &out_bytes) ||
        !mul_size((size_t)src->width * 3, (size_t)src->height, &src_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "resize: %dx%d -> %dx%d is too large", src->width,
                    src->height, out_w, out_h);
    uint8_t *dst = xmalloc(out_bytes);
    if (!dst) return fail(err, ABC_ERR_NOMEM, "out of memory for a %dx%d image", out_w, out_h);

    const bool need_horizontal = out_w != src->width;
    const bool need_vertical = out_h != src->height;
    if (!need_horizontal && !need_vertical) {
        memcpy(dst, src->rgb, out_bytes);
        out->rgb = dst;
        out->width = out_w;
        out->height = out_h;
        return ABC_OK;
    }

    abc_status st = ABC_OK;
    resample_taps htaps = {0}, vtaps = {0};
    uint8_t *tmp = NULL;
    const uint8_t *vsrc = src->rgb; /* what the vertical pass reads */
    int row0 = 0;                   /* first source row the vertical pass reads */
    if (need_vertical) {
        st = resample_taps_init(&vtaps, src->height, out_h, filter, err);
        if (st != ABC_OK) goto done;
        row0 = vtaps.first[0];
    }
    if (need_horizontal) {
        int row_end = src->height;
        if (need_vertical) row_end = vtaps.first[out_h - 1] + vtaps.count[out_h - 1];
        st = resample_taps_init(&htaps, src->width, out_w, filter, err);
        if (st != ABC_OK) goto done;
        if (need_vertical) {
            tmp = xmalloc((size_t)out_w * 3 * (size_t)(row_end - row0));
            if (!tmp) {
                st = fail(err, ABC_ERR_NOMEM, "out of memory for resampling %dx%d", out_w, row_end - row0);
                goto done;
            }
            resample_rows_horizontal(src->rgb, src->width, row0, row_end - row0, &htaps, tmp);
            vsrc = tmp;
        } else {
            resample_rows_horizontal(src->rgb, src->width, 0, out_h, &htaps, dst);
        }
    }
    if (need_vertical) resample_rows_vertical(vsrc, out_w, need_horizontal ? row0 : 0, &vtaps, dst);
done:
    resample_taps_free(&htaps);
    resample_taps_free(&vtaps);
    free(tmp);
    if (st != ABC_OK) {
        free(dst);
        return st;
    }
    out->rgb = dst;
    out->width = out_w;
    out->height = out_h;
    return ABC_OK;
}

/* Pillow's Image.resize(size, BICUBIC), the Qwen2-VL presets' resampler. */
static abc_status resize_bicubic_rgb8(const abc_image *src, int out_w, int out_h, abc_image *out,
                                      abc_error *err) {
    return resize_rgb8(src, out_w, out_h, &RESAMPLE_BICUBIC, out, err);
}

/* ---- the preset pipeline -------------------------------------------------------------------------- */

static abc_status preprocess_config_check(const preprocess_config *cfg, abc_error *err) {
    if (cfg->patch_size < 1 || cfg->patch_size > 1024 || cfg->merge_size < 1 || cfg->merge_size > 64 ||
        cfg->temporal_patch_size < 1 || cfg->temporal_patch_size > 64)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: bad patch geometry (patch %d, merge %d, temporal %d)",
                    cfg->patch_size, cfg->merge_size, cfg->temporal_patch_size);
    if (cfg->factor < 1 || cfg->factor % (cfg->patch_size * cfg->merge_size) != 0)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: factor %d is not a multiple of patch·merge %d",
                    cfg->factor, cfg->patch_size * cfg->merge_size);
    for (int c = 0; c < 3; c++)
        if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
            return fail(err, ABC_ERR_INVALID_ARG, "preprocess: bad mean/std for channel %d", c);
    return ABC_OK;
}

/* The size entering the final resize (stage 1's result for abc, the input itself for vlm2vec) and
 * the final size, as width and height. */
static abc_status preprocess_target_size(const preprocess_config *cfg, int width, int height,
                                         int stage1[2], int final_size[2], abc_error *err) {
    int64_t h1 = height, w1 = width, h2 = 0, w2 = 0;
    abc_status st;
    if (cfg->two_stage) {
        st = smart_resize_qwen_vl_utils(height, width, cfg->factor, cfg->stage1_min_pixels,
                                        cfg->stage1_max_pixels, &h1, &w1, err);
        if (st != ABC_OK) return st;
    }
    st = smart_resize_transformers(h1, w1, cfg->factor, cfg->min_pixels, cfg->max_pixels, &h2, &w2, err);
    if (st != ABC_OK) return st;
    stage1[0] = (int)w1;
    stage1[1] = (int)h1;
    final_size[0] = (int)w2;
    final_size[1] = (int)h2;
    return ABC_OK;
}

/* Normalised value of every (channel, byte): (float)((double)x · (1/255)), then (v − mean) / std in
 * float32 — the same roundings as the numpy reference, so a lookup replaces the arithmetic. */
static void pixel_value_table(const preprocess_config *cfg, float table[3][256]) {
    for (int c = 0; c < 3; c++) {
        for (int x = 0; x < 256; x++) {
            float v = (float)((double)x * (1.0 / 255.0));
            float centred = v - cfg->mean[c];
            table[c][x] = centred / cfg->std[c];
        }
    }
}

/* Patch matrix of docs/image-pipeline.md#patches: patches ordered by merge group (group row, group column, row and column
 * inside the group), each a [channel][frame][y][x] vector; the frames repeat the image. */
static void build_patches(const abc_image *img, const preprocess_config *cfg, float *pv) {
    float table[3][256];
    pixel_value_table(cfg, table);
    const int P = cfg->patch_size, M = cfg->merge_size, T = cfg->temporal_patch_size;
    const int grid_h = img->height / P, grid_w = img->width / P;
    const size_t frame_len = (size_t)P * P, patch_len = 3 * (size_t)T * frame_len;
    float *out = pv;
    for (int gy = 0; gy < grid_h / M; gy++) {
        for (int gx = 0; gx < grid_w / M; gx++) {
            for (int my = 0; my < M; my++) {
                for (int mx = 0; mx < M; mx++) {
                    const int y0 = (gy * M + my) * P, x0 = (gx * M + mx) * P;
                    for (int c = 0; c < 3; c++) {
                        float *frame0 = out + (size_t)c * T * frame_len;
                        for (int py = 0; py < P; py++) {
                            const uint8_t *row = img->rgb + ((size_t)(y0 + py) * img->width + x0) * 3 + c;
                            for (int px = 0; px < P; px++) frame0[py * P + px] = table[c][row[3 * px]];
                        }
                        for (int t = 1; t < T; t++)
                            memcpy(frame0 + t * frame_len, frame0, frame_len * sizeof *frame0);
                    }
                    out += patch_len;
                }
            }
        }
    }
}

static abc_status preprocess_image(const abc_image *src, const preprocess_config *cfg,
                                   abc_image *resized, float **pixel_values, int64_t *n_patches,
                                   int grid_thw[3], abc_error *err) {
    if (pixel_values) *pixel_values = NULL;
    if (resized) {
        resized->rgb = NULL;
        resized->width = resized->height = 0;
    }
    if (!src || !cfg || !pixel_values || !n_patches || !grid_thw)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: NULL argument");
    if (!src->rgb || src->width <= 0 || src->height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: empty image (%dx%d)", src->width, src->height);
    if ((int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "preprocess: a %dx%d image is too large", src->width,
                    src->height);
    abc_status st = preprocess_config_check(cfg, err);
    if (st != ABC_OK) return st;
    int stage1[2], final_size[2];
    st = preprocess_target_size(cfg, src->width, src->height, stage1, final_size, err);
    if (st != ABC_OK) return st;

    const int unit = cfg->patch_size * cfg->merge_size;
    if (final_size[0] % unit != 0 || final_size[1] % unit != 0)
        return fail(err, ABC_ERR_INTERNAL, "preprocess: %dx%d is not a multiple of %d", final_size[0],
                    final_size[1], unit);
    const int64_t grid_h = final_size[1] / cfg->patch_size, grid_w = final_size[0] / cfg->patch_size;
    const int64_t patches = grid_h * grid_w;
    size_t patch_len = 3 * (size_t)cfg->temporal_patch_size * (size_t)cfg->patch_size * cfg->patch_size;
    size_t n_floats, n_bytes;
    if (!mul_size((size_t)patches, patch_len, &n_floats) || !mul_size(n_floats, sizeof(float), &n_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "preprocess: %lld patches are too many", (long long)patches);

    /* Resize: stage 1 (abc only) then the final stage; each skips when the size is unchanged. */
    abc_image stage1_img = {0}, final_img = {0};
    const abc_image *cur = src;
    if (cfg->two_stage && (stage1[0] != src->width || stage1[1] != src->height)) {
        st = resize_bicubic_rgb8(src, stage1[0], stage1[1], &stage1_img, err);
        if (st != ABC_OK) return st;
        cur = &stage1_img;
    }
    st = resize_bicubic_rgb8(cur, final_size[0], final_size[1], &final_img, err);
    free(stage1_img.rgb);
    if (st != ABC_OK) return st;

    float *pv = xmalloc_aligned(n_bytes);
    if (!pv) {
        free(final_img.rgb);
        return fail(err, ABC_ERR_NOMEM, "out of memory for %lld image patches", (long long)patches);
    }
    build_patches(&final_img, cfg, pv);

    if (resized) *resized = final_img;
    else free(final_img.rgb);
    *pixel_values = pv;
    *n_patches = patches;
    grid_thw[0] = 1;
    grid_thw[1] = (int)grid_h;
    grid_thw[2] = (int)grid_w;
    return ABC_OK;
}

/* ================================================================================================
 * 6b. Preprocessing for Phi-3.5-V: the HD transform (docs/image-pipeline.md#phi-35-v-hd-transform)
 *
 * Phi3VImageProcessor in C: Pillow's bilinear resize (section 6's resampler, bit-exact) of the image,
 * transposed first when portrait, white padding of the height to whole crops, torchvision's ToTensor
 * and Normalize in float32 (bit-exact, a lookup table), the crops, and a 336×336 global view made
 * with torch's float32 bicubic interpolate (a = −0.75, align_corners=False, clamped borders), whose
 * arithmetic we repeat operation by operation.
 * ================================================================================================ */

/* num_crops beyond this is a configuration error (VLM2Vec uses 4 or 16; 256 crops are 350 MB). */
#define HD_MAX_CROPS 256
#define HD_MAX_CROP_SIZE 4096

typedef struct {
    bool transposed;  /* portrait: the resize works on the transposed image */
    int new_w, new_h; /* the resize target, in the (possibly transposed) working orientation */
    int padded_h;     /* new_h padded up to whole crops, in the working orientation */
    int top;          /* white rows above the resized image, in the working orientation */
    int out_w, out_h; /* the padded HD image in the original orientation */
} hd_geometry;

static abc_status hd_config_check(const hd_preprocess_config *cfg, abc_error *err) {
    if (cfg->num_crops < 1 || cfg->num_crops > HD_MAX_CROPS)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: num_crops %d is outside 1..%d", cfg->num_crops,
                    HD_MAX_CROPS);
    if (cfg->crop_size < 1 || cfg->crop_size > HD_MAX_CROP_SIZE)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: crop size %d is outside 1..%d", cfg->crop_size,
                    HD_MAX_CROP_SIZE);
    for (int c = 0; c < 3; c++)
        if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
            return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: bad mean/std for channel %d", c);
    return ABC_OK;
}

/* HD_transform's sizes with Python's arithmetic: ratio = w / h (double), the scale loop
 * `while scale * np.ceil(scale / ratio) <= num_crops: scale += 1` (it ends because ratio ≥ 1 makes
 * the ceiling at least 1), new_w = scale·crop, new_h = int(new_w / ratio) (truncation). */
static abc_status hd_compute_geometry(int width, int height, const hd_preprocess_config *cfg, hd_geometry *g,
                                      abc_error *err) {
    memset(g, 0, sizeof *g);
    g->transposed = width < height;
    const int w = g->transposed ? height : width, h = g->transposed ? width : height;
    const double ratio = (double)w / (double)h;
    const int crop = cfg->crop_size;
    int scale = 1;
    while ((double)scale * ceil((double)scale / ratio) <= (double)cfg->num_crops) scale++;
    scale--;
    g->new_w = scale * crop;
    const double new_h = floor((double)g->new_w / ratio);
    if (new_h < 1.0)
        return fail(err, ABC_ERR_UNSUPPORTED,
                    "HD preprocessing: a %dx%d image is too elongated (its short side would resize to 0 pixels)",
                    width, height);
    g->new_h = (int)new_h; /* ≤ new_w since ratio ≥ 1 */
    g->padded_h = (g->new_h + crop - 1) / crop * crop;
    g->top = (g->padded_h - g->new_h) / 2;
    g->out_w = g->transposed ? g->padded_h : g->new_w;
    g->out_h = g->transposed ? g->new_w : g->padded_h;
    return ABC_OK;
}

/* PIL's Image.TRANSPOSE: out[x][y] = in[y][x], out is height × width. */
static abc_status transpose_rgb8(const abc_image *src, abc_image *out, abc_error *err) {
    size_t bytes;
    if (!mul_size((size_t)src->width * 3, (size_t)src->height, &bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d image is too large", src->width, src->height);
    out->rgb = xmalloc(bytes);
    if (!out->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory transposing a %dx%d image", src->width, src->height);
    out->width = src->height;
    out->height = src->width;
    /* Blocks keep both the reads and the writes cache-friendly on large images. */
    enum { B = 32 };
    for (int y0 = 0; y0 < src->height; y0 += B)
        for (int x0 = 0; x0 < src->width; x0 += B)
            for (int y = y0; y < MIN(y0 + B, src->height); y++)
                for (int x = x0; x < MIN(x0 + B, src->width); x++) {
                    const uint8_t *p = src->rgb + ((size_t)y * src->width + x) * 3;
                    uint8_t *q = out->rgb + ((size_t)x * out->width + y) * 3;
                    q[0] = p[0], q[1] = p[1], q[2] = p[2];
                }
    return ABC_OK;
}

/* padding_336 then the transpose back, in one step: `resized` (new_w × new_h in the working
 * orientation) lands at row offset `top` of a white padded_h-high canvas, which is written in the
 * original orientation. */
static abc_status hd_pad(const abc_image *resized, const hd_geometry *g, abc_image *out, abc_error *err) {
    size_t bytes;
    if (!mul_size((size_t)g->out_w * 3, (size_t)g->out_h, &bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d HD image is too large", g->out_w, g->out_h);
    out->rgb = xmalloc(bytes);
    if (!out->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory for a %dx%d HD image", g->out_w, g->out_h);
    out->width = g->out_w;
    out->height = g->out_h;
    memset(out->rgb, 255, bytes);
    const size_t row = (size_t)resized->width * 3;
    if (!g->transposed) {
        memcpy(out->rgb + (size_t)g->top * row, resized->rgb, row * (size_t)resized->height);
        return ABC_OK;
    }
    /* resized row r (working orientation) becomes column top + r of the output. */
    for (int r = 0; r < resized->height; r++)
        for (int x = 0; x < resized->width; x++) {
            const uint8_t *p = resized->rgb + (size_t)r * row + (size_t)x * 3;
            uint8_t *q = out->rgb + ((size_t)x * out->width + (size_t)(g->top + r)) * 3;
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
        }
    return ABC_OK;
}

/* The padded HD image (8-bit RGB, original orientation) of `src`. */
static abc_status hd_transform(const abc_image *src, const hd_geometry *g, abc_image *out, abc_error *err) {
    abc_image work = *src, transposed = {0}, resized = {0};
    abc_status st = ABC_OK;
    if (g->transposed) {
        st = transpose_rgb8(src, &transposed, err);
        if (st != ABC_OK) return st;
        work = transposed;
    }
    st = resize_rgb8(&work, g->new_w, g->new_h, &RESAMPLE_BILINEAR, &resized, err);
    free(transposed.rgb);
    if (st != ABC_OK) return st;
    st = hd_pad(&resized, g, out, err);
    free(resized.rgb);
    return st;
}

/* ToTensor then Normalize for every (channel, byte): torch divides the float32 tensor by 255 and then
 * subtracts and divides by float32 mean and std, one rounding each. */
static void hd_pixel_value_table(const hd_preprocess_config *cfg, float table[3][256]) {
    for (int c = 0; c < 3; c++)
        for (int x = 0; x < 256; x++) {
            const float v = (float)x / 255.0f;
            const float centred = v - cfg->mean[c];
            table[c][x] = centred / cfg->std[c];
        }
}

/* The normalised HD image as planes [3][h][w]. */
static void hd_normalise(const abc_image *hd, const float table[3][256], float *planes) {
    const size_t plane = (size_t)hd->width * hd->height;
    for (size_t i = 0; i < plane; i++) {
        const uint8_t *p = hd->rgb + i * 3;
        planes[i] = table[0][p[0]];
        planes[plane + i] = table[1][p[1]];
        planes[2 * plane + i] = table[2][p[2]];
    }
}

/* torch's cubic convolution with A = −0.75 in float: |x| ≤ 1 and 1 < |x| < 2. */
static float torch_cubic1(float x) {
    const float A = -0.75f;
    return ((A + 2) * x - (A + 3)) * x * x + 1;
}
static float torch_cubic2(float x) {
    const float A = -0.75f;
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/* One axis of torch's upsample_bicubic2d (align_corners=False): for output i, four clamped input
 * indices and float weights, computed as ATen does (scale = (float)in / out, the source coordinate
 * scale·(i + 0.5) − 0.5 in double rounded to float, floorf, lambda clamped to [0, 1]). */
typedef struct {
    int index[4];
    float weight[4];
} cubic_taps;

static void torch_bicubic_taps(int in_size, int out_size, cubic_taps *taps) {
    const float scale = (float)in_size / (float)out_size;
    for (int i = 0; i < out_size; i++) {
        const float real = (float)((double)scale * ((double)i + 0.5) - 0.5);
        int64_t index = (int64_t)floorf(real);
        if (index > in_size - 1) index = in_size - 1;
        float t = real - (float)index;
        t = t < 0.0f ? 0.0f : t;
        t = t > 1.0f ? 1.0f : t;
        const float t_plus_1 = (float)((double)t + 1.0), one_minus_t = (float)(1.0 - (double)t);
        taps[i].weight[0] = torch_cubic2(t_plus_1);
        taps[i].weight[1] = torch_cubic1(t);
        taps[i].weight[2] = torch_cubic1(one_minus_t);
        taps[i].weight[3] = torch_cubic2((float)((double)one_minus_t + 1.0));
        for (int j = 0; j < 4; j++) {
            int64_t k = index + j - 1;
            k = k < 0 ? 0 : k;
            taps[i].index[j] = (int)(k > in_size - 1 ? in_size - 1 : k);
        }
    }
}

/* The global view: every output is Σ_rows w_row · (Σ_cols w_col · x), each sum left to right in
 * float, as ATen's separable interpolation loop evaluates it. */
static abc_status hd_global_view(const float *planes, int in_w, int in_h, int size, float *out, abc_error *err) {
    cubic_taps *tx = xmalloc((size_t)size * sizeof *tx), *ty = xmalloc((size_t)size * sizeof *ty);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return fail(err, ABC_ERR_NOMEM, "out of memory for the global view");
    }
    torch_bicubic_taps(in_w, size, tx);
    torch_bicubic_taps(in_h, size, ty);
    const size_t plane = (size_t)in_w * in_h;
    for (int c = 0; c < 3; c++) {
        const float *src = planes + c * plane;
        float *dst = out + (size_t)c * size * size;
        for (int y = 0; y < size; y++) {
            const cubic_taps *vy = &ty[y];
            for (int x = 0; x < size; x++) {
                const cubic_taps *vx = &tx[x];
                float acc = 0.0f;
                for (int j = 0; j < 4; j++) {
                    const float *row = src + (size_t)vy->index[j] * in_w;
                    float t = row[vx->index[0]] * vx->weight[0];
                    t += row[vx->index[1]] * vx->weight[1];
                    t += row[vx->index[2]] * vx->weight[2];
                    t += row[vx->index[3]] * vx->weight[3];
                    acc = j == 0 ? t * vy->weight[0] : acc + t * vy->weight[j];
                }
                dst[(size_t)y * size + x] = acc;
            }
        }
    }
    free(tx);
    free(ty);
    return ABC_OK;
}

/* Crops of crop×crop from the planes, row-major, each [3][crop][crop]. */
static void hd_cut_crops(const float *planes, int w, int h, int crop, float *out) {
    const size_t plane = (size_t)w * h, crop_len = (size_t)crop * crop;
    for (int cy = 0; cy < h / crop; cy++)
        for (int cx = 0; cx < w / crop; cx++)
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < crop; y++)
                    memcpy(out + (size_t)y * crop, planes + c * plane + (size_t)(cy * crop + y) * w + (size_t)cx * crop,
                           (size_t)crop * sizeof *out);
                out += crop_len;
            }
}

static abc_status preprocess_hd_image(const abc_image *src, const hd_preprocess_config *cfg, abc_image *hd_image,
                                      float **pixel_values, int *h_crop, int *w_crop, abc_error *err) {
    if (pixel_values) *pixel_values = NULL;
    if (hd_image) {
        hd_image->rgb = NULL;
        hd_image->width = hd_image->height = 0;
    }
    if (!src || !cfg || !pixel_values || !h_crop || !w_crop)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: NULL argument");
    if (!src->rgb || src->width <= 0 || src->height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: empty image (%dx%d)", src->width, src->height);
    if (src->width > PREPROCESS_MAX_SIDE || src->height > PREPROCESS_MAX_SIDE ||
        (int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d image is too large", src->width,
                    src->height);
    abc_status st = hd_config_check(cfg, err);
    if (st != ABC_OK) return st;
    hd_geometry g;
    st = hd_compute_geometry(src->width, src->height, cfg, &g, err);
    if (st != ABC_OK) return st;

    const int crop = cfg->crop_size, rows = g.out_h / crop, cols = g.out_w / crop;
    const size_t plane = (size_t)g.out_w * g.out_h, slot = 3 * (size_t)crop * crop;
    const size_t n_slots = 1 + (size_t)rows * cols; /* ≤ 1 + num_crops */
    size_t planes_bytes, pv_bytes;
    if (!mul_size(plane, 3 * sizeof(float), &planes_bytes) || !mul_size(n_slots, slot * sizeof(float), &pv_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d HD image is too large", g.out_w, g.out_h);
    abc_image hd = {0};
    st = hd_transform(src, &g, &hd, err);
    if (st != ABC_OK) return st;
    float *planes = xmalloc(planes_bytes);
    float *pv = xmalloc_aligned(pv_bytes);
    if (!planes || !pv) {
        free(planes);
        free(pv);
        free(hd.rgb);
        return fail(err, ABC_ERR_NOMEM, "out of memory for %zu image slots", n_slots);
    }
    float table[3][256];
    hd_pixel_value_table(cfg, table);
    hd_normalise(&hd, table, planes);
    st = hd_global_view(planes, g.out_w, g.out_h, crop, pv, err);
    if (st == ABC_OK) hd_cut_crops(planes, g.out_w, g.out_h, crop, pv + slot);
    free(planes);
    if (st != ABC_OK) {
        free(pv);
        free(hd.rgb);
        return st;
    }
    if (hd_image) *hd_image = hd;
    else free(hd.rgb);
    *pixel_values = pv;
    *h_crop = rows;
    *w_crop = cols;
    return ABC_OK;
}

/* ================================================================================================
 * 7. Kernels: matmul, attention, norms
 *
 * One portable driver per operation, parameterised by a small table of ISA-specific pieces
 * (`kernel_ops`): the GEMM micro-kernel and its packers, dot products, the softmax pieces. The scalar
 * table here is the reference; sections 7b (x86: AVX2+FMA, AVX-512) and 7c (aarch64 NEON) add the SIMD
 * tables. Every function is compiled for the baseline target; SIMD functions carry their own target
 * attribute, so one binary picks the fastest path at run time (pool->kernel_path, which tests force).
 *
 * Determinism: every output element is computed by exactly one task, and its reduction order depends
 * only on the kernel path, the shapes and the fixed blocking constants (GEMM_KC, GEMV_CHUNK, ATTN_BK),
 * never on the thread count or the task partition: results are identical for any number of threads.
 *
 * GEMM (y = x·Wᵀ, W [out][in]): the output is cut into (row block × column block) tasks, columns first.
 * A task walks `in` in GEMM_KC slices; per slice it transposes its W columns into a packed panel
 * [nr-wide strips][kc][nr] (f16/bf16 become f32 here; the panel stays in L2), then for each group of mr
 * rows packs x as [kc][mr] and runs the mr×nr micro-kernel over the strips, adding each slice into y.
 * Up to GEMV_MAX_ROWS rows of x take a dot-product path that streams W once instead.
 * Attention: see its section below. Weights of dtype DT_Q8 take the integer GEMM of the q8 part below.
 * ================================================================================================ */

#define GEMM_KC 256          /* `in` slice per packed panel */
#define GEMM_NC_MAX 768      /* widest column block of any path (packed panel: GEMM_KC × nc floats) */
#define GEMM_MR_MAX 16
#define GEMM_MC_GROUPS 16    /* row groups of mr packed together (see matmul_gemm_task) */
#define GEMM_MC_ROWS (GEMM_MC_GROUPS * GEMM_MR_MAX)
#define GEMM_NR_MAX 64
#define GEMM_MIN_ROWS_PER_TASK 48
#define GEMM_PACK_SLACK 16
#define GEMV_MAX_ROWS 8      /* up to this many rows of x use the dot-product path */
#define GEMV_CHUNK 1024      /* `in` slice of the dot-product path */
#define GEMV_ROWS_PER_TASK 16
#define ATTN_BQ 192          /* query rows per attention task (rounded to the micro-kernel's columns) */
#define ATTN_BQ_CAUSAL 48    /* smaller under a causal mask: less work above the diagonal */
#define ATTN_BK 96           /* keys per online-softmax step (a multiple of every path's mr: no padded keys) */

/* c[mr][nr] (row stride ldc) = (accumulate ? c : 0) + a · b, with a packed [kc][mr] and b [kc][nr]. */
typedef void (*gemm_micro_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate);
/* dst[0..count) = W's row elements src[0..count) as f32. */
typedef void (*convert_fn)(float *dst, const void *src, int64_t count);
/* a_pack[k][r] = x[r][k] for r < rows, 0 for rows ≤ r < mr (x: row stride ldx); may write up to
 * GEMM_PACK_SLACK floats past a_pack[kc·mr]. */
typedef void (*pack_rows_fn)(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc);
/* strip[k][j] = W[row0 + j][k0 + k] as f32 for j < rows, 0 for rows ≤ j < nr (W: `ld` elements a row). */
typedef void (*pack_strip_fn)(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                              int64_t k0, int64_t kc);

typedef struct {
    int path; /* KERNEL_* */
    int mr, nr;
    int nc; /* widest column block: its GEMM_KC × nc packed panel should stay in L2 */
    gemm_micro_fn micro;
    pack_strip_fn pack_strip;
    pack_rows_fn pack_rows;
    convert_fn from_f16, from_bf16;
    float (*dot)(const float *a, const float *b, int64_t n);
    /* out[i] = dot(w, x[i]) for 4 rows of x, each with exactly dot's arithmetic (the few-rows matmul) */
    void (*dot4)(const float *w, const float *const x[4], int64_t n, float out[4]);
    void (*scale_add)(float *y, float alpha, const float *x, float beta, int64_t n); /* y = α·y + β·x */
    float (*row_max)(const float *x, int64_t n);
    /* s[j] = exp(s[j]·scale − max) for j < n; returns their sum */
    float (*exp_sum)(float *s, int64_t n, float scale, float max);
    /* One online-softmax step for nr queries over `keys` rows of scores s[key][nr] (a lane per query):
     *   m'[j] = max(max[j], scale·max_k s[k][j]),   c[j] = e^(max[j] − m'[j]),
     *   s[k][j] ← e^(s[k][j]·scale − m'[j]),       sum[j] ← sum[j]·c[j] + Σ_k s[k][j] (k in order),
     *   o[d][j] ← o[d][j]·c[j] for d < o_rows,     max ← m'. */
    void (*softmax_step)(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o, int64_t o_rows);
    /* x[i] ← x[i]·σ(α·x[i]) (· up[i] when up is not NULL): QuickGELU (α = 1.702) and SwiGLU (α = 1) */
    void (*sigmoid_gate)(float *x, const float *up, int64_t n, float alpha);
    /* rotate-half rotary embedding of one head: v[i], v[i + half] ← v[i]·cos[i] − v[i + half]·sin[i],
     * v[i + half]·cos[i] + v[i]·sin[i] for i < half (plain products and sums: bit-identical on every path) */
    void (*rotate_half)(float *v, const float *cos_a, const float *sin_a, int64_t half);
    /* Σ (x[i] − shift), or Σ (x[i] − shift)² when `square`, in double as NORM_LANES partial sums
     * (norm_sum_scalar's order: bit-identical on every path) */
    double (*norm_sum)(const float *x, int64_t n, double shift, bool square);
    /* y[i] = (x[i] − shift)·inv·w[i] (+ b[i] when b is not NULL), products and sum in that order; y may be x */
    void (*norm_apply)(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b);
} kernel_ops;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* ---- element conversions ---- */

/* Element i of a weight array of dtype f32/f16/bf16. */
static float weight_element(const void *w, uint32_t dtype, int64_t i) {
    switch (dtype) {
    case DT_F32: return ((const float *)w)[i];
    case DT_F16: return abc_f16_to_f32(((const uint16_t *)w)[i]);
    case DT_BF16: return abc_bf16_to_f32(((const uint16_t *)w)[i]);
    default: return 0.0f; /* DT_Q8 never comes here: matmul_q8, tensor_row_f32 */
    }
}

static void convert_f16_scalar(float *dst, const void *src, int64_t count) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < count; i++) dst[i] = abc_f16_to_f32(s[i]);
}

static void convert_bf16_scalar(float *dst, const void *src, int64_t count) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < count; i++) dst[i] = abc_bf16_to_f32(s[i]);
}

/* ---- scalar reference pieces ---- */

#define SCALAR_MR 4
#define SCALAR_NR 8

static void gemm_micro_scalar(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate) {
    float acc[SCALAR_MR][SCALAR_NR];
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * SCALAR_NR;
        for (int i = 0; i < SCALAR_MR; i++) {
            float ai = a[k * SCALAR_MR + i];
            for (int j = 0; j < SCALAR_NR; j++) acc[i][j] += ai * bk[j];
        }
    }
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) c[i * ldc + j] = acc[i][j];
}

static void pack_strip_scalar(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                              int64_t k0, int64_t kc) {
    for (int j = 0; j < nr; j++) {
        if (j >= rows) {
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = 0.0f;
            continue;
        }
        int64_t at = (row0 + j) * ld + k0;
        if (dtype == DT_F32) {
            const float *row = (const float *)w + at;
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = row[k];
        } else {
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = weight_element(w, dtype, at + k);
        }
    }
}

/* a_pack[k][r] = x[r][k] for r < rows, 0 for rows ≤ r < mr: the micro-kernel's broadcasts become one
 * contiguous stream. */
static void pack_rows_scalar(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    for (int r = 0; r < mr; r++) {
        if (r >= rows) {
            for (int64_t k = 0; k < kc; k++) a_pack[k * mr + r] = 0.0f;
            continue;
        }
        const float *xr = x + r * ldx;
        for (int64_t k = 0; k < kc; k++) a_pack[k * mr + r] = xr[k];
    }
}

/* Eight interleaved partial sums, as an 8-lane vector unit would keep them. */
static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void dot4_scalar(const float *w, const float *const x[4], int64_t n, float out[4]) {
    for (int i = 0; i < 4; i++) out[i] = dot_scalar(x[i], w, n);
}

static void scale_add_scalar(float *y, float alpha, const float *x, float beta, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static float row_max_scalar(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = MAX(m, x[i]);
    return m;
}

static float exp_sum_scalar(float *s, int64_t n, float scale, float max) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] * scale - max);
        sum += s[j];
    }
    return sum;
}

static void softmax_step_scalar(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                int64_t o_rows) {
    for (int j = 0; j < nr; j++) {
        float block_max = -INFINITY;
        for (int64_t k = 0; k < keys; k++) block_max = MAX(block_max, s[k * nr + j]);
        float new_max = MAX(max[j], block_max * scale), correction = expf(max[j] - new_max), block_sum = 0.0f;
        for (int64_t k = 0; k < keys; k++) {
            s[k * nr + j] = expf(s[k * nr + j] * scale - new_max);
            block_sum += s[k * nr + j];
        }
        sum[j] = sum[j] * correction + block_sum;
        max[j] = new_max;
        for (int64_t d = 0; d < o_rows; d++) o[d * nr + j] *= correction;
    }
}

static void sigmoid_gate_scalar(float *x, const float *up, int64_t n, float alpha) {
    for (int64_t i = 0; i < n; i++) {
        float g = x[i] * (1.0f / (1.0f + expf(-alpha * x[i])));
        x[i] = up ? g * up[i] : g;
    }
}

/* The rotation of pairs (v[i], v[i + half]) for i < count (SIMD kernels finish their tails here). */
static void rotate_half_tail(float *v, const float *cos_a, const float *sin_a, int64_t count, int64_t half) {
    for (int64_t i = 0; i < count; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cos_a[i] - b * sin_a[i];
        v[i + half] = b * cos_a[i] + a * sin_a[i];
    }
}

static void rotate_half_scalar(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    rotate_half_tail(v, cos_a, sin_a, half, half);
}

/* ---- norm sums and outputs ----
 * Norms accumulate in double (outlier channels make float sums drift). Element i goes into partial sum
 * i mod NORM_LANES, in order; the partials are then added by halves (p[j] += p[j + 8], then + 4, + 2,
 * + 1). Sixteen independent chains fill the SIMD lanes, and the order never depends on the path. */
#define NORM_LANES 16

/* The last count (< NORM_LANES) elements into partials 0..count−1, then the halving sum. */
static double norm_partials_finish(double p[NORM_LANES], const float *tail, int64_t count, double shift, bool square) {
    for (int64_t j = 0; j < count; j++) {
        double d = (double)tail[j] - shift;
        p[j] += square ? d * d : d;
    }
    for (int half = NORM_LANES / 2; half > 0; half /= 2)
        for (int j = 0; j < half; j++) p[j] += p[j + half];
    return p[0];
}

#define NORM_PARTIALS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

static double norm_sum_scalar(const float *x, int64_t n, double shift, bool square) {
    /* sixteen named accumulators: an array would live in memory, one store-to-load chain per add */
#define NORM_DECLARE(j) double p##j = 0.0;
#define NORM_ADD(j) p##j += (double)x[i + (j)] - shift;
#define NORM_ADD_SQUARE(j) { double d = (double)x[i + (j)] - shift; p##j += d * d; }
#define NORM_STORE(j) partials[j] = p##j;
    NORM_PARTIALS(NORM_DECLARE)
    int64_t i = 0;
    if (square) {
        for (; i + NORM_LANES <= n; i += NORM_LANES) { NORM_PARTIALS(NORM_ADD_SQUARE) }
    } else {
        for (; i + NORM_LANES <= n; i += NORM_LANES) { NORM_PARTIALS(NORM_ADD) }
    }
    double partials[NORM_LANES];
    NORM_PARTIALS(NORM_STORE)
#undef NORM_DECLARE
#undef NORM_ADD
#undef NORM_ADD_SQUARE
#undef NORM_STORE
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static void norm_apply_scalar(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b) {
    /* through a local block: y may be x, and compilers vectorise a loop that cannot alias */
    float v[NORM_LANES];
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        for (int j = 0; j < NORM_LANES; j++) v[j] = (x[i + j] - shift) * inv * w[i + j];
        if (b)
            for (int j = 0; j < NORM_LANES; j++) v[j] = v[j] + b[i + j];
        memcpy(y + i, v, sizeof v);
    }
    for (; i < n; i++) {
        float v = (x[i] - shift) * inv * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

static const kernel_ops kernel_ops_scalar = {
    KERNEL_SCALAR, SCALAR_MR, SCALAR_NR, 192, gemm_micro_scalar, pack_strip_scalar, pack_rows_scalar, convert_f16_scalar, convert_bf16_scalar,
    dot_scalar, dot4_scalar, scale_add_scalar, row_max_scalar, exp_sum_scalar, softmax_step_scalar, sigmoid_gate_scalar,
    rotate_half_scalar, norm_sum_scalar, norm_apply_scalar,
};

/* Sections 7b/7c fill these in when their ISA is compiled in. */
static const kernel_ops *kernel_ops_avx2(void);
static const kernel_ops *kernel_ops_avx512(void);
static const kernel_ops *kernel_ops_neon(void);

/* The table for the pool's path (the scalar one without a pool, or when the path is not built). */
static const kernel_ops *kernel_ops_for(const thread_pool *pool) {
    const kernel_ops *ops = NULL;
    int path = pool ? pool->kernel_path : KERNEL_SCALAR;
    if (path == KERNEL_AVX2) ops = kernel_ops_avx2();
    else if (path == KERNEL_AVX512) ops = kernel_ops_avx512();
    else if (path == KERNEL_NEON) ops = kernel_ops_neon();
    return ops ? ops : &kernel_ops_scalar;
}

/* ---- tensor rows ---- */

/* Converts `count` elements of a weight tensor starting at element `at` to f32. */
static void weights_to_f32(const kernel_ops *ops, const void *data, uint32_t dtype, int64_t at,
                           int64_t count, float *out) {
    switch (dtype) {
    case DT_F32: memcpy(out, (const float *)data + at, (size_t)count * sizeof(float)); break;
    case DT_F16: ops->from_f16(out, (const uint16_t *)data + at, count); break;
    case DT_BF16: ops->from_bf16(out, (const uint16_t *)data + at, count); break;
    default: memset(out, 0, (size_t)count * sizeof(float)); break; /* DT_Q8: see tensor_row_f32 */
    }
}

static void tensor_row_f32(const tensor *t, int64_t row, float *out) {
    int64_t cols = t->ndim >= 2 ? t->shape[1] : t->shape[0];
    if (t->dtype == DT_Q8) { /* q[k] · scale of k's block, from the row's strip (section 3 checked the layout) */
        const uint8_t *column = (const uint8_t *)t->data + (row / Q8_STRIP) * (cols / Q8_BLOCK) * (int64_t)Q8_STRIP_BLOCK_BYTES +
                                (row % Q8_STRIP) * 4;
        for (int64_t b = 0; b < cols / Q8_BLOCK; b++)
            for (int k = 0; k < Q8_BLOCK; k++)
                out[b * Q8_BLOCK + k] = q8_strip_weight_value(column + b * (int64_t)Q8_STRIP_BLOCK_BYTES, k);
        return;
    }
    if (t->dtype == DT_Q4) {
        const uint8_t *strip = (const uint8_t *)t->data + (row / Q8_STRIP) * (cols / Q8_BLOCK) * (int64_t)Q4_STRIP_BLOCK_BYTES;
        for (int64_t b = 0; b < cols / Q8_BLOCK; b++)
            for (int k = 0; k < Q8_BLOCK; k++)
                out[b * Q8_BLOCK + k] = q4_strip_weight_value(strip + b * (int64_t)Q4_STRIP_BLOCK_BYTES, (int)(row % Q8_STRIP), k);
        return;
    }
    weights_to_f32(&kernel_ops_scalar, t->data, t->dtype, row * cols, cols, out);
}

/* ---- matmul ---- */

typedef struct {
    const kernel_ops *ops;
    float *y;
    const float *x;
    const void *w;
    uint32_t dtype;
    const float *bias;
    int64_t n, in, out;
    int64_t rows_per_task, cols_per_task;
    int n_row_blocks;
    float *const *scratch; /* per thread, POOL_SCRATCH_FLOATS each */
} matmul_job;

/* Packs W rows [j0, j0 + nc) × columns [k0, k0 + kc) as ceil(nc/nr) strips [kc][nr], zero-padded. */
static void pack_weight_panel(const matmul_job *job, int64_t j0, int64_t nc, int64_t k0, int64_t kc, float *panel) {
    int nr = job->ops->nr;
    for (int64_t jr = 0; jr < nc; jr += nr)
        job->ops->pack_strip(panel + jr * kc, nr, job->w, job->dtype, job->in, j0 + jr, (int)MIN((int64_t)nr, nc - jr),
                             k0, kc);
}

/* The weight slice a task packs next: W rows [j0, j0 + nc) × columns [k0, k0 + kc). */
typedef struct {
    int64_t j0, nc, k0, kc;
} weight_slice;

/* Lines [from, to) of `slice` (64-byte lines numbered row by row) towards the cache. Weight slices are
 * 512-byte to 1-kilobyte pieces of rows far apart, too short for the hardware prefetchers: without this
 * a pass over weights that are not cached waits on memory for every row. */
static void prefetch_weight_lines(const matmul_job *job, const weight_slice *slice, int64_t from, int64_t to) {
#if defined(__GNUC__)
    size_t es = dtype_size(job->dtype);
    int64_t lines_per_row = ceil_div(slice->kc * (int64_t)es, 64);
    for (int64_t line = from; line < to; line++) {
        int64_t row = slice->j0 + line / lines_per_row, part = line % lines_per_row;
        __builtin_prefetch((const char *)job->w + ((size_t)(row * job->in + slice->k0)) * es + (size_t)part * 64, 0, 2);
    }
#else
    (void)job, (void)slice, (void)from, (void)to;
#endif
}

/* y rows += bias over columns [j0, j0 + nc): scale_add(1, 1) is y + bias exactly (no product rounds). */
static void add_bias_block(const kernel_ops *ops, float *y, int64_t ldy, const float *bias, int64_t rows, int64_t j0,
                           int64_t nc) {
    for (int64_t i = 0; i < rows; i++) ops->scale_add(y + i * ldy + j0, 1.0f, bias + j0, 1.0f, nc);
}

/* Edge tiles (mi < mr rows or nj < nr columns of y) go through a full-size mr × nr copy, so that the
 * micro-kernels never touch y outside the product: load it (y's values when accumulating, zeros
 * elsewhere), run the micro-kernel on it, store its mi × nj corner back. */
static void edge_tile_load(float *tile, int mr, int nr, const float *c, int64_t ldc, int64_t mi, int64_t nj,
                           bool accumulate) {
    for (int64_t r = 0; r < mr; r++)
        for (int64_t j = 0; j < nr; j++) tile[r * nr + j] = (accumulate && r < mi && j < nj) ? c[r * ldc + j] : 0.0f;
}

static void edge_tile_store(const float *tile, int nr, float *c, int64_t ldc, int64_t mi, int64_t nj) {
    for (int64_t r = 0; r < mi; r++)
        for (int64_t j = 0; j < nj; j++) c[r * ldc + j] = tile[r * nr + j];
}

static void matmul_gemm_task(void *arg, int task, int thread) {
    const matmul_job *job = arg;
    const kernel_ops *ops = job->ops;
    int mr = ops->mr, nr = ops->nr;
    int64_t i0 = (int64_t)(task % job->n_row_blocks) * job->rows_per_task;
    int64_t j0 = (int64_t)(task / job->n_row_blocks) * job->cols_per_task;
    int64_t rows = MIN(job->rows_per_task, job->n - i0), nc = MIN(job->cols_per_task, job->out - j0);
    if (rows <= 0 || nc <= 0) return;
    float *panel = job->scratch[thread];
    float *a_pack = panel + (size_t)GEMM_KC * GEMM_NC_MAX;
    float *tail_c = a_pack + (size_t)GEMM_MC_ROWS * GEMM_KC + GEMM_PACK_SLACK;
    const int64_t ldy = job->out;
    const int64_t row_groups = ceil_div(rows, mr);
    for (int64_t k0 = 0; k0 < job->in; k0 += GEMM_KC) {
        int64_t kc = MIN((int64_t)GEMM_KC, job->in - k0);
        bool accumulate = k0 > 0;
        pack_weight_panel(job, j0, nc, k0, kc, panel);
        /* fetch the next slice (this block's, or the next block's first) while computing this one */
        weight_slice next = {j0, nc, k0 + GEMM_KC, MIN((int64_t)GEMM_KC, job->in - k0 - GEMM_KC)};
        if (next.kc <= 0) {
            next = (weight_slice){j0 + nc, MIN(nc, job->out - j0 - nc), 0, MIN((int64_t)GEMM_KC, job->in)};
            if (job->n_row_blocks > 1) next.nc = 0; /* this thread's next task is not known */
        }
        int64_t next_lines = next.nc > 0 ? next.nc * ceil_div(next.kc * (int64_t)dtype_size(job->dtype), 64) : 0;
        /* GEMM_MC_GROUPS row groups packed at once: each kc × nr strip of the panel is then used for all of
         * them while it sits in L1, and the packed rows stream from L2 */
        for (int64_t g0 = 0; g0 < row_groups; g0 += GEMM_MC_GROUPS) {
            int64_t groups = MIN((int64_t)GEMM_MC_GROUPS, row_groups - g0);
            prefetch_weight_lines(job, &next, next_lines * g0 / row_groups, next_lines * (g0 + groups) / row_groups);
            for (int64_t g = 0; g < groups; g++) {
                int64_t i = (g0 + g) * mr, mi = MIN((int64_t)mr, rows - i);
                ops->pack_rows(a_pack + g * mr * kc, mr, job->x + (i0 + i) * job->in + k0, job->in, (int)mi, kc);
            }
            for (int64_t jr = 0; jr < nc; jr += nr) {
                int64_t nj = MIN((int64_t)nr, nc - jr);
                for (int64_t g = 0; g < groups; g++) {
                    int64_t i = (g0 + g) * mr, mi = MIN((int64_t)mr, rows - i);
                    const float *a = a_pack + g * mr * kc;
                    float *c = job->y + (i0 + i) * ldy + j0 + jr;
                    if (mi == mr && nj == nr) {
                        ops->micro(kc, a, panel + jr * kc, c, ldy, accumulate);
                        continue;
                    }
                    edge_tile_load(tail_c, mr, nr, c, ldy, mi, nj, accumulate);
                    ops->micro(kc, a, panel + jr * kc, tail_c, nr, accumulate);
                    edge_tile_store(tail_c, nr, c, ldy, mi, nj);
                }
            }
        }
    }
    if (job->bias) add_bias_block(job->ops, job->y + i0 * ldy, ldy, job->bias, rows, j0, nc);
}

/* Dot-product path (few rows, or no scratch): W streamed once, row after row, in GEMV_CHUNK slices
 * (converted to f32 on the way); each slice's dot products with the x rows are added into y. */
static void matmul_gemv_task(void *arg, int task, int thread) {
    (void)thread;
    const matmul_job *job = arg;
    const kernel_ops *ops = job->ops;
    float chunk[GEMV_CHUNK];
    int64_t j_begin = (int64_t)task * job->cols_per_task, j_end = MIN(job->out, j_begin + job->cols_per_task);
    for (int64_t j = j_begin; j < j_end; j++) {
        for (int64_t k0 = 0; k0 < job->in; k0 += GEMV_CHUNK) {
            int64_t kc = MIN((int64_t)GEMV_CHUNK, job->in - k0);
            const float *w;
            if (job->dtype == DT_F32) {
                w = (const float *)job->w + j * job->in + k0;
            } else {
                weights_to_f32(ops, job->w, job->dtype, j * job->in + k0, kc, chunk);
                w = chunk;
            }
            for (int64_t i0 = 0; i0 < job->n; i0 += 4) {
                int64_t rows = MIN((int64_t)4, job->n - i0);
                float d[4];
                if (rows == 1) {
                    d[0] = ops->dot(job->x + i0 * job->in + k0, w, kc);
                } else { /* a short group repeats its last row */
                    const float *x[4];
                    for (int64_t i = 0; i < 4; i++) x[i] = job->x + (i0 + MIN(i, rows - 1)) * job->in + k0;
                    ops->dot4(w, x, kc, d);
                }
                for (int64_t i = 0; i < rows; i++) {
                    float *yij = job->y + (i0 + i) * job->out + j;
                    *yij = k0 == 0 ? d[i] : *yij + d[i];
                }
            }
        }
        if (job->bias)
            for (int64_t i = 0; i < job->n; i++) job->y[i * job->out + j] += job->bias[j];
    }
}

/* Cuts the output into tasks: column blocks first (each packs its panel once for all its rows), then
 * row blocks when there are too few columns to keep the threads busy. The partition never changes
 * the numerics, only the balance. */
/* The partition of an n × out product for a micro-kernel of mr × nr and column blocks of at most nc. */
typedef struct {
    int64_t rows_per_task, cols_per_task;
    int n_row_blocks, n_tasks;
} task_plan;

static task_plan plan_tasks(int64_t n, int64_t out, int mr, int nr, int nc, int threads) {
    int64_t col_blocks = ceil_div(out, nc), row_blocks = 1;
    if (threads > 1) {
        if (col_blocks < 2 * threads)
            row_blocks = MAX((int64_t)1, MIN(ceil_div(2 * threads, col_blocks), n / GEMM_MIN_ROWS_PER_TASK));
        /* balance: a multiple of the thread count when the columns allow it */
        int64_t tasks = col_blocks * row_blocks;
        if (tasks % threads != 0) {
            int64_t want = ceil_div(round_up(tasks, threads), row_blocks);
            if (want <= ceil_div(out, nr)) col_blocks = want;
        }
    }
    task_plan p;
    p.cols_per_task = round_up(ceil_div(out, col_blocks), nr);
    col_blocks = ceil_div(out, p.cols_per_task);
    p.rows_per_task = round_up(ceil_div(n, row_blocks), mr);
    row_blocks = ceil_div(n, p.rows_per_task);
    p.n_row_blocks = (int)row_blocks;
    p.n_tasks = (int)(row_blocks * col_blocks);
    return p;
}

static int matmul_plan(matmul_job *job, int threads) {
    task_plan p = plan_tasks(job->n, job->out, job->ops->mr, job->ops->nr, job->ops->nc, threads);
    job->rows_per_task = p.rows_per_task;
    job->cols_per_task = p.cols_per_task;
    job->n_row_blocks = p.n_row_blocks;
    return p.n_tasks;
}

static void matmul_q8(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, uint32_t dtype,
                      int64_t out_dim, int64_t in_dim, const float *bias);

static void matmul_any(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, uint32_t dtype,
                       int64_t out_dim, int64_t in_dim, const float *bias) {
    if (n <= 0 || out_dim <= 0) return;
    if ((dtype == DT_Q8 || dtype == DT_Q4) && in_dim > 0 && in_dim % Q8_BLOCK == 0) {
        matmul_q8(pool, y, x, n, w, dtype, out_dim, in_dim, bias);
        return;
    }
    if (in_dim <= 0 || !(dtype == DT_F32 || dtype == DT_F16 || dtype == DT_BF16)) {
        /* empty sum, or a layout section 3 would have refused: never read what we do not know */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < out_dim; j++) y[i * out_dim + j] = bias ? bias[j] : 0.0f;
        return;
    }
    matmul_job job = {
        .ops = kernel_ops_for(pool), .y = y, .x = x, .w = w, .dtype = dtype, .bias = bias,
        .n = n, .in = in_dim, .out = out_dim,
    };
    int threads = thread_pool_size(pool);
    const int64_t path_rows = pool && pool->path_rows ? pool->path_rows : n;
    if (path_rows <= GEMV_MAX_ROWS || !pool || pool->scratch_floats < (size_t)GEMM_KC * (GEMM_NC_MAX + GEMM_MC_ROWS) + GEMM_PACK_SLACK +
                                                             (size_t)GEMM_MR_MAX * GEMM_NR_MAX) {
        job.cols_per_task = GEMV_ROWS_PER_TASK;
        thread_pool_run(pool, (int)ceil_div(out_dim, GEMV_ROWS_PER_TASK), matmul_gemv_task, &job);
        return;
    }
    job.scratch = pool->scratch;
    int tasks = matmul_plan(&job, threads);
    thread_pool_run(pool, tasks, matmul_gemm_task, &job);
}

static void matmul(thread_pool *pool, float *y, const float *x, int64_t n, const tensor *W, const tensor *bias) {
    matmul_any(pool, y, x, n, W->data, W->dtype, W->shape[0], W->shape[1], bias ? (const float *)bias->data : NULL);
}

static void matmul_f32(thread_pool *pool, float *y, const float *x, int64_t n, const float *W, int64_t out_dim,
                       int64_t in_dim, const float *bias) {
    matmul_any(pool, y, x, n, W, DT_F32, out_dim, in_dim, bias);
}

/* ---- q8: int8 weights × int8 activations, exact int32 block sums ----
 *
 * Weights are DT_Q8 (section 3): int8 quants with one f32 scale per Q8_BLOCK elements of a row, already
 * in the kernels' layout (strips of Q8_STRIP rows, below), so they are used in place from the mmap.
 * Activations are quantized on the fly the same way, per row and per block of Q8_BLOCK: scale =
 * amax/127, q = round(x·127/amax), ties to even. Outlier channels (a norm weight 25× the others makes
 * a few channels of every row dominate their block, and would leave the rest of the block 4 or 5 bits)
 * are taken out: when at most Q8_OUTLIERS_MAX elements of a block exceed amax/4 and the smallest of them
 * stands more than Q8_OUTLIER_GAP times above every other element, they are set aside in float, the
 * block is quantized without them, and their products are added in float with the dequantized weights.
 * Each block's Σ qx·qw is an exact int32 (|Σ| ≤ 32·127·127), so every path computes the same integers
 * whatever its instructions; the float part is fixed too. Per slice of Q8_KC columns of `in`:
 *
 *     y[i][j] ← fma((float)isum_b, scale_x[i][b] · scale_w[j][b], y[i][j])     for each block b in order
 *     y[i][j] ← y[i][j] + x[i][k] · ((float)qw[j][k] · scale_w[j][k/32])        for each outlier k in order
 *
 * starting from y = 0, then y + bias[j]; the fma is fused (one rounding) on every path, nothing else
 * is. Results are bit-identical across paths, thread counts and partitions.
 *
 * A weight strip block (Q8_STRIP rows × one block, section 3) is [Q8_BLOCK/4][Q8_STRIP][4] int8 (four
 * consecutive k of one row are one 32-bit lane: what VNNI's vpdpbusd, AVX2's vpmaddubsw+vpmaddwd and
 * NEON's sdot consume), then Q8_STRIP f32 scales; a strip's blocks follow each other. Kernels of nr = 8
 * columns read half a strip (the pointer moved by 4·column bytes), of 32 columns two strips (b, b_hi).
 * Activation rows are quantized per group of mr into [Q8_BLOCK/4][mr][4] per block, then mr f32 scales
 * and mr int32 compensations −128·Σq (VNNI feeds the weights as unsigned w + 128 and starts each block
 * sum there). */

#define Q8_KC 512                           /* `in` slice per packed panel (a multiple of Q8_BLOCK) */
#define Q8_KC_BLOCKS (Q8_KC / Q8_BLOCK)
#define Q8_MR_MAX 8
#define Q8_NR_MAX 32
#define Q8_TINY 1e-30f                      /* blocks with amax below this quantize to 0 */
#define Q8_FLT_MAX 0x1.fffffep+127f         /* FLT_MAX (no <float.h> here) */
#define Q8_OUTLIERS_MAX 8                   /* per block of activations */
#define Q8_OUTLIER_GAP 4.0f
#define Q8_ROWS_BLOCK_BYTES(mr) ((size_t)(mr) * (Q8_BLOCK + 8))    /* quads, scales, compensations */

/* An activation set aside from its block (row of the group, block of the slice, column in the block). */
typedef struct {
    uint16_t row, block, k;
    float value;
} q8_outlier;

/* c[mr][nr] (row stride ldc) = (accumulate ? c : 0) + the blocks' terms, in block order. b: the weight
 * strip's first block (columns 0..min(nr, 16)); b_hi: columns 16..31's strip (32-wide kernels only). */
typedef void (*q8_micro_fn)(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                            int64_t ldc, bool accumulate);
/* Quantizes `rows` rows of x (row stride ldx) × blocks·Q8_BLOCK columns into the packed layout; rows
 * rows..mr−1 are zero. Outliers are appended to outliers[*n_outliers] (block by block, row by row). */
typedef void (*q8_pack_rows_fn)(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                q8_outlier *outliers, int *n_outliers);

/* c[row][j] (row stride ldc) += value · ((float)w[j][k] · scale_w[j][block]) for each outlier in list
 * order, j < nj, the weights read from the strips b (columns 0..15) and b_hi (16..31) as the micro-kernel
 * gets them (blocks of the current slice). */
typedef void (*q8_strip_outliers_fn)(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                     const q8_outlier *outliers, int n_outliers);

/* q4 (DT_Q4): as q8_micro_fn over q4 strip blocks, b and b_hi at their strips' column 0; the tile's
 * columns are the strips' columns j0.. (j0 is 8 for the right half of an 8-wide kernel, else 0). Each
 * block's Σ qx·qw (qw = nibble − 8) is the same exact int32 as q8's, the float step the same fma with
 * the float16 scale widened (exactly). */
typedef void (*q4_micro_fn)(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, int j0, float *c,
                            int64_t ldc, bool accumulate);

/* q8_strip_outliers_fn for q4 strips: b, b_hi at their strips' column 0, the tile from column j0 (as
 * q4_micro_fn gets them). */
typedef void (*q4_strip_outliers_fn)(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int j0, int nj,
                                     const q8_outlier *outliers, int n_outliers);

typedef struct {
    const char *name;
    int mr, nr, nc;
    q8_micro_fn micro;
    q8_pack_rows_fn pack_rows;
    q8_strip_outliers_fn strip_outliers;
    q4_micro_fn micro4; /* NULL: q4 products take the scalar table (same activations, same results) */
    q4_strip_outliers_fn strip_outliers4;
} q8_kernels;

/* The outlier rule of a block with `large` elements above amax/4 (at most Q8_OUTLIERS_MAX): they are
 * set aside when the smallest of them stands more than Q8_OUTLIER_GAP times above the largest of the
 * others (`rest`). Max and min are exact, so SIMD quantizers evaluate the same rule bit for bit. */
static bool q8_outliers_apart(float smallest_large, float rest) { return smallest_large > Q8_OUTLIER_GAP * rest; }

/* Quantizes one block of activations into q[0..Q8_BLOCK) and returns its scale; *outliers gets the
 * bit mask of the elements set aside (their q is 0). A block holding a non-finite value gets scale NaN
 * and zeros (its outputs become NaN, as in float math). This is the definition every SIMD quantizer
 * reproduces bit for bit. */
static float q8_quantize_block(const float *x, int8_t *q, uint32_t *outliers) {
    float amax = 0.0f;
    bool finite = true;
    *outliers = 0;
    for (int k = 0; k < Q8_BLOCK; k++) {
        float a = fabsf(x[k]);
        if (!(a <= Q8_FLT_MAX)) finite = false;
        else if (a > amax) amax = a;
    }
    if (!finite || amax < Q8_TINY) {
        memset(q, 0, Q8_BLOCK);
        return finite ? 0.0f : NAN;
    }
    const float quarter = amax * 0.25f;
    uint32_t large = 0;
    int n_large = 0;
    float smallest_large = amax, rest = 0.0f;
    for (int k = 0; k < Q8_BLOCK; k++) {
        float a = fabsf(x[k]);
        if (a > quarter) {
            large |= 1u << k;
            n_large++;
            smallest_large = MIN(smallest_large, a);
        } else {
            rest = MAX(rest, a);
        }
    }
    if (n_large <= Q8_OUTLIERS_MAX && q8_outliers_apart(smallest_large, rest)) {
        *outliers = large;
        amax = rest;
        if (amax < Q8_TINY) {
            memset(q, 0, Q8_BLOCK);
            return 0.0f;
        }
    }
    float inv = 127.0f / amax;
    for (int k = 0; k < Q8_BLOCK; k++) /* |x·inv| ≤ 127.00002 */
        q[k] = *outliers >> k & 1 ? 0 : (int8_t)lrintf(x[k] * inv);
    return amax / 127.0f;
}

/* Appends a block's outliers (mask from q8_quantize_block) to the list. */
static void q8_add_outliers(q8_outlier *list, int *n, int row, int64_t block, const float *x, uint32_t mask) {
    for (; mask; mask &= mask - 1) { /* set bits from the lowest */
#if defined(__GNUC__)
        int k = __builtin_ctz(mask);
#else
        int k = 0;
        while (!(mask >> k & 1)) k++;
#endif
        list[(*n)++] = (q8_outlier){(uint16_t)row, (uint16_t)block, (uint16_t)k, x[k]};
    }
}

/* Stores a block's scale and compensation −128·Σq for row r of an mr-row group. */
static void q8_store_row_scale(uint8_t *block, int mr, int r, int32_t quant_sum, float scale) {
    int32_t comp = -128 * quant_sum;
    memcpy(block + (size_t)mr * Q8_BLOCK + (size_t)r * 4, &scale, sizeof scale);
    memcpy(block + (size_t)mr * (Q8_BLOCK + 4) + (size_t)r * 4, &comp, sizeof comp);
}

/* Stores a block's quads (32-bit lanes of four k) for row r of an mr-row group, its scale and its
 * compensation. */
static void q8_store_row_block(uint8_t *block, int mr, int r, const int8_t *q, float scale) {
    int32_t sum = 0;
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++)
        for (int t = 0; t < 4; t++) {
            block[((size_t)k4 * mr + r) * 4 + t] = (uint8_t)q[k4 * 4 + t];
            sum += q[k4 * 4 + t];
        }
    q8_store_row_scale(block, mr, r, sum, scale);
}

/* One row's block through the scalar definition, outliers included. */
static void q8_pack_row_block_scalar(uint8_t *block, int mr, int r, const float *xb, int64_t b, q8_outlier *outliers,
                                     int *n_outliers) {
    int8_t q[Q8_BLOCK];
    uint32_t mask;
    float scale = q8_quantize_block(xb, q, &mask);
    q8_store_row_block(block, mr, r, q, scale);
    q8_add_outliers(outliers, n_outliers, r, b, xb, mask);
}

static void q8_pack_rows_scalar(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                q8_outlier *outliers, int *n_outliers) {
    static const int8_t zeros[Q8_BLOCK];
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r < rows) {
                q8_pack_row_block_scalar(block, mr, r, x + r * ldx + b * Q8_BLOCK, b, outliers, n_outliers);
            } else {
                q8_store_row_block(block, mr, r, zeros, 0.0f);
            }
        }
    }
}

#define Q8_SCALAR_MR 4
#define Q8_SCALAR_NR 8

static void q8_micro_scalar(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                            int64_t ldc, bool accumulate) {
    enum { MR = Q8_SCALAR_MR, NR = Q8_SCALAR_NR };
    (void)b_hi;
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        float sa[MR], sb[NR];
        memcpy(sa, ab + MR * Q8_BLOCK, sizeof sa);
        memcpy(sb, bb + Q8_STRIP * Q8_BLOCK, sizeof sb);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) {
                int32_t sum = 0;
                for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++)
                    for (int t = 0; t < 4; t++)
                        sum += (int8_t)ab[(k4 * MR + i) * 4 + t] * (int8_t)bb[(k4 * Q8_STRIP + j) * 4 + t];
                acc[i][j] = fmaf((float)sum, sa[i] * sb[j], acc[i][j]);
            }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}

/* The definition of q8_strip_outliers_fn. */
static void q8_strip_outliers_scalar(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                     const q8_outlier *outliers, int n_outliers) {
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES;
        float *row = c + out->row * ldc;
        for (int j = 0; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

/* Column j0 + j's float16 scales of a q4 strip block, widened. */
static void q4_strip_scales(const uint8_t *bb, int j0, int n, float *out) {
    for (int j = 0; j < n; j++) {
        uint16_t h;
        memcpy(&h, bb + Q4_NIBBLE_BYTES + (size_t)(j0 + j) * 2, sizeof h);
        out[j] = abc_f16_to_f32(h);
    }
}

/* The definition of q4_micro_fn. */
static void q4_micro_scalar(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, int j0, float *c,
                            int64_t ldc, bool accumulate) {
    enum { MR = Q8_SCALAR_MR, NR = Q8_SCALAR_NR };
    (void)b_hi;
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q4_STRIP_BLOCK_BYTES;
        float sa[MR], sb[NR];
        memcpy(sa, ab + MR * Q8_BLOCK, sizeof sa);
        q4_strip_scales(bb, j0, NR, sb);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) {
                int32_t sum = 0;
                for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++)
                    for (int t = 0; t < 4; t++) {
                        const uint8_t byte = bb[((k4 / 2) * Q8_STRIP + j0 + j) * 4 + t];
                        sum += (int8_t)ab[(k4 * MR + i) * 4 + t] * ((k4 % 2 ? byte >> 4 : byte & 15) - 8);
                    }
                acc[i][j] = fmaf((float)sum, sa[i] * sb[j], acc[i][j]);
            }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}

/* The definition of q4_strip_outliers_fn: q8_strip_outliers_scalar's products with q4's weight values. */
static void q4_strip_outliers(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int j0, int nj,
                              const q8_outlier *outliers, int n_outliers) {
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q4_STRIP_BLOCK_BYTES;
        float *row = c + out->row * ldc;
        for (int j = 0; j < nj; j++) {
            const int col = j0 + j;
            const float w = col < Q8_STRIP ? q4_strip_weight_value(b + block, col, out->k)
                                           : q4_strip_weight_value(b_hi + block, col - Q8_STRIP, out->k);
            row[j] = row[j] + out->value * w;
        }
    }
}

static const q8_kernels q8_kernels_scalar = {
    "scalar", Q8_SCALAR_MR, Q8_SCALAR_NR, 128, q8_micro_scalar, q8_pack_rows_scalar, q8_strip_outliers_scalar,
    q4_micro_scalar, q4_strip_outliers,
};

/* Sections 7b/7c fill these in when their ISA is compiled in (NULL otherwise). */
static const q8_kernels *q8_kernels_avx2(void);
static const q8_kernels *q8_kernels_avx512vnni(void);
static const q8_kernels *q8_kernels_neon(bool dotprod);

/* The q8 kernels for the pool's path and CPU features (VNNI within AVX-512, dotprod within NEON). */
static const q8_kernels *q8_kernels_for(const thread_pool *pool) {
    const q8_kernels *k = NULL;
    int path = pool ? pool->kernel_path : KERNEL_SCALAR;
    if (path == KERNEL_AVX512 && pool->features.avx512vnni) k = q8_kernels_avx512vnni();
    if (!k && (path == KERNEL_AVX512 || path == KERNEL_AVX2)) k = q8_kernels_avx2();
    if (path == KERNEL_NEON) k = q8_kernels_neon(pool->features.neon_dot);
    return k ? k : &q8_kernels_scalar;
}

typedef struct {
    const q8_kernels *k;
    const kernel_ops *ops; /* the pool's path, for the bias */
    float *y;
    const float *x;
    const uint8_t *w; /* strips (section 3) */
    bool q4;          /* DT_Q4 strips (micro4), else DT_Q8 */
    size_t strip_block_bytes;
    const float *bias;
    int64_t n, in, out;
    task_plan plan;
    /* When not NULL: x already quantized for every column block (q8_prepack_activations). */
    const uint8_t *x_packed; /* [row group][block] of Q8_ROWS_BLOCK_BYTES(mr) */
    uint32_t *x_outlier_masks; /* [row group][block][mr]: the activations set aside (their values stay in x) */
    uint8_t *x_slice_outliers; /* [row group][slice of Q8_KC]: whether any of the group's masks there is set */
} q8_job;

#define Q8_GROUP_OUTLIERS (Q8_MR_MAX * Q8_KC_BLOCKS * Q8_OUTLIERS_MAX)

/* Slices of Q8_KC columns in a row of `in`. */
static int64_t q8_slices(int64_t in) { return ceil_div(in / Q8_BLOCK, Q8_KC_BLOCKS); }

/* A slice's worth of zero strip blocks: a 32-wide kernel's upper half past the last strip. */
static _Alignas(64) const uint8_t q8_zero_strip[Q8_KC_BLOCKS * Q8_STRIP_BLOCK_BYTES];

/* Block b of the strip that holds weight row `row` (a multiple of Q8_STRIP). */
static const uint8_t *q8_strip_block(const q8_job *job, int64_t row, int64_t b) {
    return job->w + ((row / Q8_STRIP) * (job->in / Q8_BLOCK) + b) * (int64_t)job->strip_block_bytes;
}

/* Lines [from, to) of the weight slice from row j0, blocks [b0, b0 + nb), towards the cache: per strip
 * one contiguous piece of nb strip blocks, numbered strip by strip. */
static void q8_prefetch_slice(const q8_job *job, int64_t j0, int64_t b0, int64_t nb, int64_t from, int64_t to) {
#if defined(__GNUC__)
    const int64_t strip_lines = ceil_div(nb * (int64_t)job->strip_block_bytes, 64);
    if (from >= to) return;
    int64_t strip = from / strip_lines, part = from % strip_lines; /* then stepped: no division per line */
    const uint8_t *piece = q8_strip_block(job, j0 + strip * Q8_STRIP, b0);
    for (int64_t line = from; line < to; line++, part++) {
        if (part == strip_lines) part = 0, piece = q8_strip_block(job, j0 + ++strip * Q8_STRIP, b0);
        __builtin_prefetch(piece + part * 64, 0, 2);
    }
#else
    (void)job, (void)j0, (void)b0, (void)nb, (void)from, (void)to;
#endif
}

/* Bytes [0, n) from p towards the cache, a line at a time. */
static void prefetch_bytes(const void *p, int64_t n) {
#if defined(__GNUC__)
    for (int64_t at = 0; at < n; at += 64) __builtin_prefetch((const char *)p + at, 0, 3);
#else
    (void)p, (void)n;
#endif
}

/* The outlier list pack_rows would give for rows row0..row0+mi−1, blocks b0..b0+nb−1 (same order:
 * block by block, row by row), rebuilt from the prepacked masks and x. */
static void q8_collect_outliers(const q8_job *job, int64_t row0, int64_t mi, int64_t b0, int64_t nb, q8_outlier *outliers,
                                int *n_outliers) {
    const int64_t total_blocks = job->in / Q8_BLOCK;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t r = 0; r < mi; r++) {
            uint32_t mask = job->x_outlier_masks[((row0 / job->k->mr) * total_blocks + b0 + b) * job->k->mr + r];
            if (mask) q8_add_outliers(outliers, n_outliers, (int)r, b, job->x + (row0 + r) * job->in + (b0 + b) * Q8_BLOCK, mask);
        }
}

/* One row group of x through pack_rows, slice by slice, into the prepacked layout. */
static void q8_prepack_task(void *arg, int task, int thread) {
    (void)thread;
    const q8_job *job = arg;
    const int mr = job->k->mr;
    const int64_t row0 = (int64_t)task * mr, mi = MIN((int64_t)mr, job->n - row0), total_blocks = job->in / Q8_BLOCK;
    q8_outlier outliers[Q8_GROUP_OUTLIERS];
    uint32_t *masks = job->x_outlier_masks + task * total_blocks * mr;
    uint8_t *slice_outliers = job->x_slice_outliers + task * q8_slices(job->in);
    memset(masks, 0, (size_t)(total_blocks * mr) * sizeof *masks);
    for (int64_t b0 = 0; b0 < total_blocks; b0 += Q8_KC_BLOCKS) {
        const int64_t nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - b0);
        int n_outliers = 0;
        uint8_t *dst = (uint8_t *)job->x_packed + (size_t)(task * total_blocks + b0) * Q8_ROWS_BLOCK_BYTES(mr);
        job->k->pack_rows(dst, mr, job->x + row0 * job->in + b0 * Q8_BLOCK, job->in, (int)mi, nb, outliers, &n_outliers);
        for (int o = 0; o < n_outliers; o++)
            masks[(b0 + outliers[o].block) * mr + outliers[o].row] |= 1u << outliers[o].k;
        slice_outliers[b0 / Q8_KC_BLOCKS] = n_outliers > 0;
    }
}

static void matmul_q8_task(void *arg, int task, int thread) {
    (void)thread;
    const q8_job *job = arg;
    const q8_kernels *k = job->k;
    const int mr = k->mr, nr = k->nr;
    const int64_t i0 = (int64_t)(task % job->plan.n_row_blocks) * job->plan.rows_per_task;
    const int64_t j0 = (int64_t)(task / job->plan.n_row_blocks) * job->plan.cols_per_task;
    const int64_t rows = MIN(job->plan.rows_per_task, job->n - i0), nc = MIN(job->plan.cols_per_task, job->out - j0);
    if (rows <= 0 || nc <= 0) return;
    _Alignas(64) uint8_t a_pack[Q8_KC_BLOCKS * Q8_MR_MAX * (Q8_BLOCK + 8)];
    _Alignas(64) float tail_c[Q8_MR_MAX * Q8_NR_MAX];
    q8_outlier outliers[Q8_GROUP_OUTLIERS];
    const int64_t ldy = job->out, total_blocks = job->in / Q8_BLOCK, row_groups = ceil_div(rows, mr);
    for (int64_t b0 = 0; b0 < total_blocks; b0 += Q8_KC_BLOCKS) {
        const int64_t nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - b0);
        const bool accumulate = b0 > 0, last = b0 + nb == total_blocks;
        /* the next slice of this task (or the next task's first, when the tasks are columns only) is
         * fetched meanwhile, spread over the row groups */
        int64_t next_j0 = j0, next_nc = nc, next_b0 = b0 + nb;
        if (last) {
            next_j0 = j0 + nc, next_b0 = 0;
            next_nc = job->plan.n_row_blocks > 1 ? 0 : MIN(nc, job->out - next_j0);
        }
        const int64_t next_nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - next_b0);
        const int64_t next_lines = next_nc > 0 ? ceil_div(next_nc, Q8_STRIP) * ceil_div(next_nb * (int64_t)job->strip_block_bytes, 64) : 0;
        for (int64_t i = 0; i < rows; i += mr) {
            const int64_t mi = MIN((int64_t)mr, rows - i), group = i / mr;
            q8_prefetch_slice(job, next_j0, next_b0, next_nb, next_lines * group / row_groups,
                              next_lines * (group + 1) / row_groups);
            int n_outliers = 0;
            const uint8_t *x_pack = a_pack;
            if (job->x_packed) {
                x_pack = job->x_packed + (size_t)(((i0 + i) / mr) * total_blocks + b0) * Q8_ROWS_BLOCK_BYTES(mr);
                if (job->x_slice_outliers[((i0 + i) / mr) * q8_slices(job->in) + b0 / Q8_KC_BLOCKS])
                    q8_collect_outliers(job, i0 + i, mi, b0, nb, outliers, &n_outliers);
            } else {
                k->pack_rows(a_pack, mr, job->x + (i0 + i) * job->in + b0 * Q8_BLOCK, job->in, (int)mi, nb, outliers,
                             &n_outliers);
            }
            /* the next group's quantized rows, and below the next tile's y rows, are on their way while
             * this tile's integer sums run: both come from beyond L2 when `in` is long */
            if (job->x_packed && i + mr < rows) prefetch_bytes(x_pack + total_blocks * Q8_ROWS_BLOCK_BYTES(mr), nb * (int64_t)Q8_ROWS_BLOCK_BYTES(mr));
            for (int64_t jr = 0; jr < nc; jr += nr) {
                const int64_t nj = MIN((int64_t)nr, nc - jr), col = j0 + jr;
                if (accumulate && jr + nr < nc)
                    for (int64_t r = 0; r < mi; r++) prefetch_bytes(job->y + (i0 + i + r) * ldy + col + nr, nr * (int64_t)sizeof(float));
                /* columns col.. are in strip col / 16, at column col % 16 (8-wide kernels take halves;
                 * q8's kernels get the strip moved by 4 bytes a column, q4's the column) */
                const int j_in = (int)(col % Q8_STRIP);
                const uint8_t *strip = q8_strip_block(job, col - j_in, b0), *b = job->q4 ? strip : strip + j_in * 4;
                const uint8_t *b_hi = nj > Q8_STRIP ? q8_strip_block(job, col + Q8_STRIP, b0) : q8_zero_strip;
                float *c = job->y + (i0 + i) * ldy + col;
                float *tile = c;
                int64_t ldt = ldy;
                if (mi != mr || nj != nr) {
                    edge_tile_load(tail_c, mr, nr, c, ldy, mi, nj, accumulate);
                    tile = tail_c, ldt = nr;
                }
                if (job->q4) k->micro4(nb, x_pack, b, b_hi, j_in, tile, ldt, accumulate);
                else k->micro(nb, x_pack, b, b_hi, tile, ldt, accumulate);
                if (tile != c) edge_tile_store(tail_c, nr, c, ldy, mi, nj);
                /* the outliers' products after the slice's block sums, as in the definition; the
                 * strips and the tile are still cached */
                if (n_outliers && job->q4) k->strip_outliers4(c, ldy, b, b_hi, j_in, (int)nj, outliers, n_outliers);
                else if (n_outliers) k->strip_outliers(c, ldy, b, b_hi, (int)nj, outliers, n_outliers);
            }
            if (last && job->bias) add_bias_block(job->ops, job->y + (i0 + i) * ldy, ldy, job->bias, mi, j0, nc); /* tile still cached */
        }
    }
}

/* y = x · Wᵀ (+ bias) for a q8 or q4 W [out_dim][in_dim] (in_dim a multiple of Q8_BLOCK). */
static void matmul_q8(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, uint32_t dtype,
                      int64_t out_dim, int64_t in_dim, const float *bias) {
    const q8_kernels *k = q8_kernels_for(pool);
    const bool q4 = dtype == DT_Q4;
    if (q4 && !k->micro4) k = &q8_kernels_scalar;
    q8_job job = {
        .k = k, .ops = kernel_ops_for(pool), .y = y, .x = x, .w = w, .q4 = q4,
        .strip_block_bytes = q4 ? Q4_STRIP_BLOCK_BYTES : Q8_STRIP_BLOCK_BYTES, .bias = bias, .n = n, .in = in_dim, .out = out_dim,
    };
    job.plan = plan_tasks(n, out_dim, k->mr, k->nr, k->nc, thread_pool_size(pool));
    /* With several column blocks, quantizing x once instead of once per block saves that many passes over
     * it; without the memory, each task quantizes its rows itself (the same bytes either way). */
    const int64_t col_blocks = job.plan.n_tasks / job.plan.n_row_blocks, groups = ceil_div(n, k->mr);
    if (col_blocks > 1) {
        /* quantized rows, masks and flags, each in floats' worth of room */
        const size_t sizes[3] = {
            (size_t)ceil_div(groups * (in_dim / Q8_BLOCK) * (int64_t)Q8_ROWS_BLOCK_BYTES(k->mr), (int64_t)sizeof(float)),
            (size_t)(groups * (in_dim / Q8_BLOCK) * k->mr),
            (size_t)ceil_div(groups * q8_slices(in_dim), (int64_t)sizeof(float)),
        };
        float *packed, *masks, *flags;
        float **arrays[3] = {&packed, &masks, &flags};
        if (pool && workspace_carve(&pool->shared, 3, sizes, arrays)) {
            job.x_packed = (const uint8_t *)packed;
            job.x_outlier_masks = (uint32_t *)masks;
            job.x_slice_outliers = (uint8_t *)flags;
            thread_pool_run(pool, (int)groups, q8_prepack_task, &job);
        }
    }
    thread_pool_run(pool, job.plan.n_tasks, matmul_q8_task, &job);
}

/* ---- attention (online softmax: at most one ATTN_BQ × ATTN_BK block of scores at a time) ----
 *
 * A task is one head × one block of query rows, worked transposed so that the softmax runs down columns
 * (one SIMD lane per query, no horizontal reductions) and no block is packed twice. Per block of keys:
 * Sᵀ = K·Qᵀ (the GEMM micro-kernel over head_dim: K packed like x's rows, Q like a weight strip, Sᵀ
 * written straight into the strip layout P·V reads), the online-softmax step on each strip of nr
 * queries (running max and sum, Pᵀ = exp(Sᵀ·scale − max), Oᵀ scaled by the correction), then
 * Oᵀ += Vᵀ·Pᵀ (the micro-kernel again, V's rows copied as packed panels). The K and V panels are packed
 * once per kv head before the tasks start (into the thread's scratch per block when that memory cannot
 * be had: the same panels). Oᵀ, the running max and sum live in the thread's scratch. Without scratch
 * (no pool, or a head too wide for it) the row-at-a-time path below does the same with dot/scale_add. */

typedef struct {
    const kernel_ops *ops;
    float *out;
    const float *q, *k, *v;
    int64_t n, q_stride, kv_stride;
    int n_heads, group, head_dim;
    int64_t query_block;
    int query_blocks;
    bool causal;
    float scale;
    float *const *scratch;
    /* NULL, or every kv head's K and Vᵀ panels, block by block (attention_pack_task): packed once
     * instead of once per query block */
    float *panels;
    int64_t key_blocks;
} attention_job;

/* One head × query_block rows, one query row at a time. The output rows double as the running
 * weighted sums of v. */
static void attention_rows_task(void *arg, int task, int thread) {
    (void)thread;
    const attention_job *job = arg;
    const kernel_ops *ops = job->ops;
    int h = task / job->query_blocks, hd = job->head_dim;
    int64_t i0 = (int64_t)(task % job->query_blocks) * job->query_block, bq = MIN(job->query_block, job->n - i0);
    int kvh = h / job->group;
    int64_t out_stride = (int64_t)job->n_heads * hd;
    float scores[ATTN_BK];
    for (int64_t i = 0; i < bq; i++) {
        const float *qi = job->q + (i0 + i) * job->q_stride + (int64_t)h * hd;
        float *oi = job->out + (i0 + i) * out_stride + (int64_t)h * hd;
        memset(oi, 0, (size_t)hd * sizeof(float));
        float row_max = -INFINITY, row_sum = 0.0f;
        int64_t keys_total = job->causal ? i0 + i + 1 : job->n;
        for (int64_t j0 = 0; j0 < keys_total; j0 += ATTN_BK) {
            int64_t keys = MIN((int64_t)ATTN_BK, keys_total - j0);
            for (int64_t j = 0; j < keys; j++)
                scores[j] = ops->dot(qi, job->k + (j0 + j) * job->kv_stride + (int64_t)kvh * hd, hd);
            float new_max = MAX(row_max, ops->row_max(scores, keys) * job->scale);
            float correction = expf(row_max - new_max); /* 0 on the first block */
            row_sum = row_sum * correction + ops->exp_sum(scores, keys, job->scale, new_max);
            for (int64_t j = 0; j < keys; j++)
                ops->scale_add(oi, j == 0 ? correction : 1.0f, job->v + (j0 + j) * job->kv_stride + (int64_t)kvh * hd,
                               scores[j], hd);
            row_max = new_max;
        }
        for (int d = 0; d < hd; d++) oi[d] /= row_sum;
    }
}

/* The packed panels of one block of keys: K [key group][hd][mr] (pack_rows may write GEMM_PACK_SLACK
 * floats past it), then Vᵀ [dim group][ATTN_BK keys][mr]. A task under the causal mask may read only
 * the first keys of a block: the layout does not depend on how many there are. */
static int64_t attention_key_panel_floats(int64_t hd, int mr) { return round_up(round_up(ATTN_BK, mr) * hd + GEMM_PACK_SLACK, 16); }
static int64_t attention_panel_floats(int64_t hd, int mr) {
    return attention_key_panel_floats(hd, mr) + round_up(round_up(ATTN_BK, mr) * round_up(hd, mr), 16);
}

/* Floats of scratch the blocked path needs per thread: bq query lanes (a multiple of nr), micro-kernel mr. */
static size_t attention_scratch_floats(int64_t bq, int64_t hd, int mr) {
    const int64_t key_rows = round_up(ATTN_BK, mr), dim_rows = round_up(hd, mr);
    return (size_t)(round_up(bq * hd, 16)               /* Qᵀ strips */
                    + attention_panel_floats(hd, mr)    /* K and Vᵀ panels of a block */
                    + bq * key_rows                     /* Sᵀ, then Pᵀ */
                    + bq * dim_rows                     /* Oᵀ */
                    + 2 * bq);                          /* running max, sum */
}

/* panel[key][r] = v[key][d0 + r] for d0 + r < hd, else 0 (Vᵀ rows d0.. packed as the micro-kernel's a). */
static void pack_value_panel(float *panel, int mr, const float *v, int64_t ld, int64_t keys, int64_t d0, int64_t hd) {
    const int64_t width = MIN((int64_t)mr, hd - d0);
    for (int64_t key = 0; key < keys; key++) {
        float *dst = panel + key * mr;
        memcpy(dst, v + key * ld + d0, (size_t)width * sizeof(float));
        for (int64_t r = width; r < mr; r++) dst[r] = 0.0f;
    }
}

/* Keys j0.. (a block of at most ATTN_BK) of kv head kvh as the panels described above, at `panels`. */
static void pack_key_value_block(const attention_job *job, float *panels, int kvh, int64_t j0) {
    const kernel_ops *ops = job->ops;
    const int mr = ops->mr;
    const int64_t hd = job->head_dim, bk = MIN((int64_t)ATTN_BK, job->n - j0);
    const float *k_rows = job->k + j0 * job->kv_stride + (int64_t)kvh * hd;
    const float *v_rows = job->v + j0 * job->kv_stride + (int64_t)kvh * hd;
    float *v_panels = panels + attention_key_panel_floats(hd, mr);
    for (int64_t g = 0; g < ceil_div(bk, mr); g++)
        ops->pack_rows(panels + g * mr * hd, mr, k_rows + g * mr * job->kv_stride, job->kv_stride, (int)MIN((int64_t)mr, bk - g * mr), hd);
    for (int64_t d0 = 0; d0 < round_up(hd, mr); d0 += mr)
        pack_value_panel(v_panels + d0 * ATTN_BK, mr, v_rows, job->kv_stride, bk, d0, hd);
}

/* One task per kv head × block of keys. */
static void attention_pack_task(void *arg, int task, int thread) {
    (void)thread;
    const attention_job *job = arg;
    const int kvh = (int)(task / job->key_blocks);
    const int64_t block = task % job->key_blocks;
    pack_key_value_block(job, job->panels + (task * attention_panel_floats(job->head_dim, job->ops->mr)), kvh, block * ATTN_BK);
}

/* Under the causal mask, lanes j (queries q0 + j) of a strip see keys up to their own: the later keys of
 * block j0 get `value` (−∞ before the softmax step, 0 after it). */
static void mask_future_keys(float *strip, int nr, int64_t keys, int64_t j0, int64_t q0, float value) {
    for (int64_t k = MAX((int64_t)0, q0 + 1 - j0); k < keys; k++)
        for (int64_t j = 0; j < nr && q0 + j < j0 + k; j++) strip[k * nr + j] = value;
}

static void attention_block_task(void *arg, int task, int thread) {
    const attention_job *job = arg;
    const kernel_ops *ops = job->ops;
    const int mr = ops->mr, nr = ops->nr;
    const int h = task / job->query_blocks, kvh = h / job->group;
    const int64_t hd = job->head_dim, bq_max = job->query_block; /* a multiple of nr */
    const int64_t i0 = (int64_t)(task % job->query_blocks) * bq_max, bq = MIN(bq_max, job->n - i0);
    const int64_t strips = ceil_div(bq, nr), key_rows = round_up(ATTN_BK, mr), dim_rows = round_up(hd, mr);
    const int64_t panel_floats = attention_panel_floats(hd, mr), key_panel_floats = attention_key_panel_floats(hd, mr);
    float *q_strips = job->scratch[thread];               /* [strip][hd][nr] */
    float *block_panels = q_strips + round_up(bq_max * hd, 16);
    float *p = block_panels + panel_floats;               /* [strip][key][nr]: Sᵀ, then Pᵀ */
    float *o = p + bq_max * key_rows;                     /* [strip][dim][nr]: Oᵀ */
    float *row_max = o + bq_max * dim_rows, *row_sum = row_max + bq_max;

    for (int64_t s = 0; s < strips; s++)
        ops->pack_strip(q_strips + s * hd * nr, nr, job->q, DT_F32, job->q_stride, i0 + s * nr,
                        (int)MIN((int64_t)nr, bq - s * nr), (int64_t)h * hd, hd);
    memset(o, 0, (size_t)(strips * dim_rows * nr) * sizeof(float));
    for (int64_t i = 0; i < strips * nr; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    const int64_t key_end = job->causal ? i0 + bq : job->n;
    for (int64_t j0 = 0; j0 < key_end; j0 += ATTN_BK) {
        const int64_t bk = MIN((int64_t)ATTN_BK, key_end - j0), key_groups = ceil_div(bk, mr);
        const float *k_panels = job->panels ? job->panels + (kvh * job->key_blocks + j0 / ATTN_BK) * panel_floats : block_panels;
        if (!job->panels) pack_key_value_block(job, block_panels, kvh, j0);
        const float *v_panels = k_panels + key_panel_floats;
        for (int64_t s = 0; s < strips; s++) {
            const int64_t q0 = i0 + s * nr; /* query of lane 0 */
            /* a strip whose queries all precede the block: probability 0 throughout, nothing changes */
            if (job->causal && j0 > q0 + nr - 1) continue;
            float *ps = p + s * key_rows * nr, *os = o + s * dim_rows * nr;
            for (int64_t g = 0; g < key_groups; g++) ops->micro(hd, k_panels + g * mr * hd, q_strips + s * hd * nr, ps + g * mr * nr, nr, false);
            const bool masked = job->causal && j0 + bk - 1 > q0;
            if (masked) mask_future_keys(ps, nr, bk, j0, q0, -INFINITY);
            ops->softmax_step(ps, bk, nr, job->scale, row_max + s * nr, row_sum + s * nr, os, dim_rows);
            if (masked) mask_future_keys(ps, nr, bk, j0, q0, 0.0f);
            for (int64_t d0 = 0; d0 < dim_rows; d0 += mr) ops->micro(bk, v_panels + d0 * ATTN_BK, ps, os + d0 * nr, nr, true);
        }
    }
    const int64_t out_stride = (int64_t)job->n_heads * hd;
    for (int64_t i = 0; i < bq; i++) {
        const float *oi = o + (i / nr) * dim_rows * nr + i % nr, inv_sum = 1.0f / row_sum[i];
        float *dst = job->out + (i0 + i) * out_stride + (int64_t)h * hd;
        for (int64_t d = 0; d < hd; d++) dst[d] = oi[d * nr] * inv_sum;
    }
}

static void attention(thread_pool *pool, float *out, const float *q, const float *k, const float *v, int64_t n,
                      int n_heads, int n_kv_heads, int head_dim, int64_t q_stride, int64_t kv_stride, bool causal) {
    if (n <= 0 || n_heads <= 0 || head_dim <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return;
    const kernel_ops *ops = kernel_ops_for(pool);
    attention_job job = {
        .ops = ops, .out = out, .q = q, .k = k, .v = v, .n = n, .q_stride = q_stride, .kv_stride = kv_stride,
        .n_heads = n_heads, .group = n_heads / n_kv_heads, .head_dim = head_dim, .causal = causal,
        .scale = 1.0f / sqrtf((float)head_dim),
    };
    /* query rows per task: whole strips of the micro-kernel's columns, about ATTN_BQ */
    int rows = causal ? ATTN_BQ_CAUSAL : ATTN_BQ;
    job.query_block = (int64_t)ops->nr * MAX(1, rows / ops->nr);
    size_t need = attention_scratch_floats(job.query_block, head_dim, ops->mr);
    bool blocked = pool && need <= pool->scratch_floats;
    if (!blocked) job.query_block = rows;
    job.query_blocks = (int)ceil_div(n, job.query_block);
    job.scratch = pool ? pool->scratch : NULL;
    job.key_blocks = ceil_div(n, ATTN_BK);
    /* K and V packed once for all query blocks; without the memory, each task packs what it reads */
    if (blocked && (job.query_blocks > 1 || job.group > 1)) {
        const size_t size = (size_t)(n_kv_heads * job.key_blocks * attention_panel_floats(head_dim, ops->mr));
        float **arrays[1] = {&job.panels};
        if (workspace_carve(&pool->shared, 1, &size, arrays))
            thread_pool_run(pool, (int)(n_kv_heads * job.key_blocks), attention_pack_task, &job);
    }
    thread_pool_run(pool, n_heads * job.query_blocks, blocked ? attention_block_task : attention_rows_task, &job);
}

/* ================================================================================================
 * 7b. Kernels for x86-64: AVX2+FMA(+F16C) and AVX-512 (F/BW/VL)
 *
 * Every function carries its own target attribute, so the file compiles with the baseline flags and
 * the dispatch in section 7 calls these only when cpu_features says the CPU (and OS) support them.
 * ================================================================================================ */

#if defined(__x86_64__) && !defined(ABC_NO_SIMD) /* ABC_NO_SIMD: the scalar-only build */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

/* ---- conversions ---- */

/* Eight elements of a weight row as f32 (dtype is a constant after inlining). */
static inline AVX2_TARGET __m256 load8_as_f32_avx2(const void *w, uint32_t dtype, int64_t at) {
    if (dtype == DT_F32) return _mm256_loadu_ps((const float *)w + at);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + at));
    if (dtype == DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static AVX2_TARGET void convert_f16_avx2(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8_as_f32_avx2(src, DT_F16, i));
    for (; i < count; i++) dst[i] = abc_f16_to_f32(((const uint16_t *)src)[i]);
}

static AVX2_TARGET void convert_bf16_avx2(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8_as_f32_avx2(src, DT_BF16, i));
    for (; i < count; i++) dst[i] = abc_bf16_to_f32(((const uint16_t *)src)[i]);
}

/* ---- weight packing: 8×8 transposes ---- */

/* Transposes eight named __m256 in place (named variables, not an array: at -O2 an array of vectors
 * would stay in memory). */
#define TRANSPOSE8_AVX2(r0, r1, r2, r3, r4, r5, r6, r7)                                           \
    do {                                                                                          \
        __m256 t0_ = _mm256_unpacklo_ps(r0, r1), t1_ = _mm256_unpackhi_ps(r0, r1);                \
        __m256 t2_ = _mm256_unpacklo_ps(r2, r3), t3_ = _mm256_unpackhi_ps(r2, r3);                \
        __m256 t4_ = _mm256_unpacklo_ps(r4, r5), t5_ = _mm256_unpackhi_ps(r4, r5);                \
        __m256 t6_ = _mm256_unpacklo_ps(r6, r7), t7_ = _mm256_unpackhi_ps(r6, r7);                \
        __m256 s0_ = _mm256_shuffle_ps(t0_, t2_, 0x44), s1_ = _mm256_shuffle_ps(t0_, t2_, 0xee);  \
        __m256 s2_ = _mm256_shuffle_ps(t1_, t3_, 0x44), s3_ = _mm256_shuffle_ps(t1_, t3_, 0xee);  \
        __m256 s4_ = _mm256_shuffle_ps(t4_, t6_, 0x44), s5_ = _mm256_shuffle_ps(t4_, t6_, 0xee);  \
        __m256 s6_ = _mm256_shuffle_ps(t5_, t7_, 0x44), s7_ = _mm256_shuffle_ps(t5_, t7_, 0xee);  \
        r0 = _mm256_permute2f128_ps(s0_, s4_, 0x20), r1 = _mm256_permute2f128_ps(s1_, s5_, 0x20); \
        r2 = _mm256_permute2f128_ps(s2_, s6_, 0x20), r3 = _mm256_permute2f128_ps(s3_, s7_, 0x20); \
        r4 = _mm256_permute2f128_ps(s0_, s4_, 0x31), r5 = _mm256_permute2f128_ps(s1_, s5_, 0x31); \
        r6 = _mm256_permute2f128_ps(s2_, s6_, 0x31), r7 = _mm256_permute2f128_ps(s3_, s7_, 0x31); \
    } while (0)

/* Eight full rows (row0 .. row0+7) of the strip, columns [k0, k0 + kc), into strip columns j0..j0+7. */
static inline AVX2_TARGET void pack_rows8_avx2(float *strip, int nr, int j0, const void *w, uint32_t dtype, int64_t ld,
                                               int64_t row0, int64_t k0, int64_t kc) {
    const int64_t at = row0 * ld + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r0 = load8_as_f32_avx2(w, dtype, at + k), r1 = load8_as_f32_avx2(w, dtype, at + ld + k);
        __m256 r2 = load8_as_f32_avx2(w, dtype, at + 2 * ld + k), r3 = load8_as_f32_avx2(w, dtype, at + 3 * ld + k);
        __m256 r4 = load8_as_f32_avx2(w, dtype, at + 4 * ld + k), r5 = load8_as_f32_avx2(w, dtype, at + 5 * ld + k);
        __m256 r6 = load8_as_f32_avx2(w, dtype, at + 6 * ld + k), r7 = load8_as_f32_avx2(w, dtype, at + 7 * ld + k);
        TRANSPOSE8_AVX2(r0, r1, r2, r3, r4, r5, r6, r7);
        float *dst = strip + k * nr + j0;
        _mm256_storeu_ps(dst, r0), _mm256_storeu_ps(dst + nr, r1);
        _mm256_storeu_ps(dst + 2 * nr, r2), _mm256_storeu_ps(dst + 3 * nr, r3);
        _mm256_storeu_ps(dst + 4 * nr, r4), _mm256_storeu_ps(dst + 5 * nr, r5);
        _mm256_storeu_ps(dst + 6 * nr, r6), _mm256_storeu_ps(dst + 7 * nr, r7);
    }
    for (; k < kc; k++)
        for (int j = 0; j < 8; j++) strip[k * nr + j0 + j] = weight_element(w, dtype, at + j * ld + k);
}

static AVX2_TARGET void pack_strip_avx2(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0,
                                        int rows, int64_t k0, int64_t kc) {
    for (int j0 = 0; j0 < nr; j0 += 8) {
        if (j0 + 8 <= rows) {
            bool packed = true;
            switch (dtype) { /* constant dtype per copy: the loads inline without a branch */
            case DT_F32: pack_rows8_avx2(strip, nr, j0, w, DT_F32, ld, row0 + j0, k0, kc); break;
            case DT_F16: pack_rows8_avx2(strip, nr, j0, w, DT_F16, ld, row0 + j0, k0, kc); break;
            case DT_BF16: pack_rows8_avx2(strip, nr, j0, w, DT_BF16, ld, row0 + j0, k0, kc); break;
            default: packed = false; break;
            }
            if (packed) continue;
        }
        for (int j = j0; j < j0 + 8; j++) {
            if (j >= rows) {
                for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = 0.0f;
            } else {
                for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = weight_element(w, dtype, (row0 + j) * ld + k0 + k);
            }
        }
    }
}

/* Rows of x into the micro-kernel's [kc][mr] layout, eight rows × eight columns per transpose. Each
 * k writes 8 floats per group of 8 rows, in increasing address order, so the part of a store beyond
 * row mr is overwritten by the next k (and the last one lands in the slack). */
/* mr ≤ 16 (both x86 micro-kernels). */
static AVX2_TARGET void pack_rows_avx2(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    rows = MIN(rows, mr);
#define ROW_OR_ZERO(row) ((row) < rows ? _mm256_loadu_ps(x + (row) * ldx + k) : _mm256_setzero_ps())
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 p0 = ROW_OR_ZERO(0), p1 = ROW_OR_ZERO(1), p2 = ROW_OR_ZERO(2), p3 = ROW_OR_ZERO(3);
        __m256 p4 = ROW_OR_ZERO(4), p5 = ROW_OR_ZERO(5), p6 = ROW_OR_ZERO(6), p7 = ROW_OR_ZERO(7);
        TRANSPOSE8_AVX2(p0, p1, p2, p3, p4, p5, p6, p7);
        float *dst = a_pack + k * mr;
        if (mr <= 8) {
            _mm256_storeu_ps(dst, p0), _mm256_storeu_ps(dst + mr, p1);
            _mm256_storeu_ps(dst + 2 * mr, p2), _mm256_storeu_ps(dst + 3 * mr, p3);
            _mm256_storeu_ps(dst + 4 * mr, p4), _mm256_storeu_ps(dst + 5 * mr, p5);
            _mm256_storeu_ps(dst + 6 * mr, p6), _mm256_storeu_ps(dst + 7 * mr, p7);
            continue;
        }
        __m256 q0 = ROW_OR_ZERO(8), q1 = ROW_OR_ZERO(9), q2 = ROW_OR_ZERO(10), q3 = ROW_OR_ZERO(11);
        __m256 q4 = ROW_OR_ZERO(12), q5 = ROW_OR_ZERO(13), q6 = ROW_OR_ZERO(14), q7 = ROW_OR_ZERO(15);
        TRANSPOSE8_AVX2(q0, q1, q2, q3, q4, q5, q6, q7);
        _mm256_storeu_ps(dst, p0), _mm256_storeu_ps(dst + 8, q0);
        _mm256_storeu_ps(dst + mr, p1), _mm256_storeu_ps(dst + mr + 8, q1);
        _mm256_storeu_ps(dst + 2 * mr, p2), _mm256_storeu_ps(dst + 2 * mr + 8, q2);
        _mm256_storeu_ps(dst + 3 * mr, p3), _mm256_storeu_ps(dst + 3 * mr + 8, q3);
        _mm256_storeu_ps(dst + 4 * mr, p4), _mm256_storeu_ps(dst + 4 * mr + 8, q4);
        _mm256_storeu_ps(dst + 5 * mr, p5), _mm256_storeu_ps(dst + 5 * mr + 8, q5);
        _mm256_storeu_ps(dst + 6 * mr, p6), _mm256_storeu_ps(dst + 6 * mr + 8, q6);
        _mm256_storeu_ps(dst + 7 * mr, p7), _mm256_storeu_ps(dst + 7 * mr + 8, q7);
    }
#undef ROW_OR_ZERO
    for (; k < kc; k++)
        for (int row = 0; row < mr; row++) a_pack[k * mr + row] = row < rows ? x[row * ldx + k] : 0.0f;
}

/* ---- AVX2 micro-kernel: 6 rows × 16 columns, 12 accumulators ---- */

#define AVX2_MR 6
#define AVX2_NR 16

static AVX2_TARGET void gemm_micro_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                        bool accumulate) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    for (int i = 0; i < AVX2_MR; i++) /* y is read only after the loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    for (int64_t k = 0; k < kc; k++, a += AVX2_MR, b += AVX2_NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), t;
        t = _mm256_broadcast_ss(a + 0), c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01);
        t = _mm256_broadcast_ss(a + 1), c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11);
        t = _mm256_broadcast_ss(a + 2), c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21);
        t = _mm256_broadcast_ss(a + 3), c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31);
        t = _mm256_broadcast_ss(a + 4), c40 = _mm256_fmadd_ps(t, b0, c40), c41 = _mm256_fmadd_ps(t, b1, c41);
        t = _mm256_broadcast_ss(a + 5), c50 = _mm256_fmadd_ps(t, b0, c50), c51 = _mm256_fmadd_ps(t, b1, c51);
    }
    if (accumulate) {
        c00 = _mm256_add_ps(_mm256_loadu_ps(c), c00), c01 = _mm256_add_ps(_mm256_loadu_ps(c + 8), c01);
        c10 = _mm256_add_ps(_mm256_loadu_ps(c + ldc), c10), c11 = _mm256_add_ps(_mm256_loadu_ps(c + ldc + 8), c11);
        c20 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc), c20);
        c21 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc + 8), c21);
        c30 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc), c30);
        c31 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc + 8), c31);
        c40 = _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc), c40);
        c41 = _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc + 8), c41);
        c50 = _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc), c50);
        c51 = _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc + 8), c51);
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* ---- vector helpers for attention and the dot-product path ---- */

static inline AVX2_TARGET float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static AVX2_TARGET float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        i += 8;
    }
    float sum = hsum_avx2(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Four dot_avx2s sharing the loads of w (same arithmetic per row as dot_avx2). */
static AVX2_TARGET void dot4_avx2(const float *w, const float *const x[4], int64_t n, float out[4]) {
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 wl = _mm256_loadu_ps(w + i), wh = _mm256_loadu_ps(w + i + 8);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), wl, a0), b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i + 8), wh, b0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), wl, a1), b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i + 8), wh, b1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), wl, a2), b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i + 8), wh, b2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), wl, a3), b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i + 8), wh, b3);
    }
    if (i + 8 <= n) {
        __m256 wl = _mm256_loadu_ps(w + i);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), wl, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), wl, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), wl, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), wl, a3);
        i += 8;
    }
    float s0 = hsum_avx2(_mm256_add_ps(a0, b0)), s1 = hsum_avx2(_mm256_add_ps(a1, b1));
    float s2 = hsum_avx2(_mm256_add_ps(a2, b2)), s3 = hsum_avx2(_mm256_add_ps(a3, b3));
    for (; i < n; i++) {
        s0 += x0[i] * w[i];
        s1 += x1[i] * w[i];
        s2 += x2[i] * w[i];
        s3 += x3[i] * w[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

static AVX2_TARGET void scale_add_avx2(float *y, float alpha, const float *x, float beta, int64_t n) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vb, _mm256_loadu_ps(x + i), _mm256_mul_ps(va, _mm256_loadu_ps(y + i))));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static AVX2_TARGET float row_max_avx2(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r = MAX(r, x[i]);
    return r;
}

/* e^x for x ≤ 88.37 (the softmax calls it with x ≤ 0): 2^n · e^r with |r| ≤ ln2/2 and a degree-7 polynomial
 * for e^r (about 1 ulp); results below e^−87.3 come out as ~1e−38 instead of 0 (harmless next to the
 * row maximum's 1). */
static inline AVX2_TARGET __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* softmax_step on 8 lanes at a time (nr a multiple of 8). */
static AVX2_TARGET void softmax_step_avx2(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                          int64_t o_rows) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int j = 0; j < nr; j += 8) {
        __m256 block_max = _mm256_set1_ps(-INFINITY), block_sum = _mm256_setzero_ps();
        for (int64_t k = 0; k < keys; k++) block_max = _mm256_max_ps(block_max, _mm256_loadu_ps(s + k * nr + j));
        const __m256 old_max = _mm256_loadu_ps(max + j), new_max = _mm256_max_ps(old_max, _mm256_mul_ps(block_max, vs));
        const __m256 correction = exp_avx2(_mm256_sub_ps(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + k * nr + j), vs, new_max));
            _mm256_storeu_ps(s + k * nr + j, e);
            block_sum = _mm256_add_ps(block_sum, e);
        }
        _mm256_storeu_ps(sum + j, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(sum + j), correction), block_sum));
        _mm256_storeu_ps(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++)
            _mm256_storeu_ps(o + d * nr + j, _mm256_mul_ps(_mm256_loadu_ps(o + d * nr + j), correction));
    }
}

static AVX2_TARGET float exp_sum_avx2(float *s, int64_t n, float scale, float max) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(max), sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + i), vs, vm));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) { /* the tail through a padded copy keeps one code path for the exponential */
        float tail[8] = {0};
        int64_t rest = n - i;
        memcpy(tail, s + i, (size_t)rest * sizeof(float));
        __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(tail), vs, vm));
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), lanes));
        e = _mm256_and_ps(e, keep);
        _mm256_storeu_ps(tail, e);
        memcpy(s + i, tail, (size_t)rest * sizeof(float));
        sum = _mm256_add_ps(sum, e);
    }
    return hsum_avx2(sum);
}

/* x·σ(α·x) = x / (1 + e^(−α·x)) (· up); the tail through the scalar definition. */
static AVX2_TARGET void sigmoid_gate_avx2(float *x, const float *up, int64_t n, float alpha) {
    const __m256 one = _mm256_set1_ps(1.0f), neg_alpha = _mm256_set1_ps(-alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 g = _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(_mm256_mul_ps(neg_alpha, v))));
        if (up) g = _mm256_mul_ps(g, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(x + i, g);
    }
    sigmoid_gate_scalar(x + i, up ? up + i : NULL, n - i, alpha);
}

static AVX2_TARGET void rotate_half_avx2(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
        __m256 c = _mm256_loadu_ps(cos_a + i), s = _mm256_loadu_ps(sin_a + i);
        _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(v + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
    rotate_half_tail(v + i, cos_a + i, sin_a + i, half - i, half);
}

/* norm_sum_scalar's partials i mod 16 as four vectors of four doubles. */
static AVX2_TARGET double norm_sum_avx2(const float *x, int64_t n, double shift, bool square) {
    const __m256d vshift = _mm256_set1_pd(shift);
    __m256d p[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int q = 0; q < 4; q++) {
            __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * q)), vshift);
            p[q] = _mm256_add_pd(p[q], square ? _mm256_mul_pd(d, d) : d);
        }
    double partials[NORM_LANES];
    for (int q = 0; q < 4; q++) _mm256_storeu_pd(partials + 4 * q, p[q]);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static AVX2_TARGET void norm_apply_avx2(float *y, const float *x, int64_t n, float shift, float inv, const float *w,
                                        const float *b) {
    const __m256 vshift = _mm256_set1_ps(shift), vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift), vinv), _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, b ? _mm256_add_ps(v, _mm256_loadu_ps(b + i)) : v);
    }
    norm_apply_scalar(y + i, x + i, n - i, shift, inv, w + i, b ? b + i : NULL);
}

static const kernel_ops kernel_ops_avx2_table = {
    KERNEL_AVX2, AVX2_MR, AVX2_NR, 768, gemm_micro_avx2, pack_strip_avx2, pack_rows_avx2, convert_f16_avx2, convert_bf16_avx2,
    dot_avx2, dot4_avx2, scale_add_avx2, row_max_avx2, exp_sum_avx2, softmax_step_avx2, sigmoid_gate_avx2,
    rotate_half_avx2, norm_sum_avx2, norm_apply_avx2,
};

/* ---- AVX-512 micro-kernel: 12 rows × 32 columns, 24 accumulators ---- */

#define AVX512_MR 12
#define AVX512_NR 32

/* Written out row by row (no arrays of vectors): at -O2 compilers do not fully unroll loops over
 * accumulator arrays, and the accumulators would live in memory. */
#define AVX512_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static AVX512_TARGET void gemm_micro_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                            bool accumulate) {
#define AVX512_DECLARE(i) __m512 c##i##l = _mm512_setzero_ps(), c##i##h = _mm512_setzero_ps();
#define AVX512_STEP(i)                             \
    t = _mm512_set1_ps(a[i]);                      \
    c##i##l = _mm512_fmadd_ps(t, b0, c##i##l);     \
    c##i##h = _mm512_fmadd_ps(t, b1, c##i##h);
#define AVX512_STORE(i)                                                                   \
    if (accumulate) {                                                                     \
        c##i##l = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc), c##i##l);                  \
        c##i##h = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc + 16), c##i##h);             \
    }                                                                                     \
    _mm512_storeu_ps(c + (i) * ldc, c##i##l);                                             \
    _mm512_storeu_ps(c + (i) * ldc + 16, c##i##h);
    AVX512_ROWS(AVX512_DECLARE)
    for (int i = 0; i < AVX512_MR; i++) { /* y is read only after the loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++, a += AVX512_MR, b += AVX512_NR) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), t;
        AVX512_ROWS(AVX512_STEP)
    }
    AVX512_ROWS(AVX512_STORE)
#undef AVX512_DECLARE
#undef AVX512_STEP
#undef AVX512_STORE
}

/* ---- AVX-512 vector helpers for attention: the AVX2 ones' arithmetic on 16 lanes ---- */

static AVX512_TARGET void scale_add_avx512(float *y, float alpha, const float *x, float beta, int64_t n) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(vb, _mm512_loadu_ps(x + i), _mm512_mul_ps(va, _mm512_loadu_ps(y + i))));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static AVX512_TARGET float row_max_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_mask_max_ps(m, (__mmask16)((1u << (n - i)) - 1), m, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i));
    return _mm512_reduce_max_ps(m);
}

/* exp_avx2's range reduction and polynomial on 16 lanes. */
static inline AVX512_TARGET __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.37f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static AVX512_TARGET float exp_sum_avx512(float *s, int64_t n, float scale, float max) {
    __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(max), sum = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(s + i), vs, vm));
        _mm512_storeu_ps(s + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) { /* the tail under a mask: the same exponential, lanes past n neither read nor written */
        __mmask16 keep = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(keep, s + i), vs, vm));
        _mm512_mask_storeu_ps(s + i, keep, e);
        sum = _mm512_mask_add_ps(sum, keep, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* softmax_step_avx2's arithmetic on 16 lanes at a time (nr a multiple of 16). */
static AVX512_TARGET void softmax_step_avx512(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                              int64_t o_rows) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int j = 0; j < nr; j += 16) {
        __m512 block_max = _mm512_set1_ps(-INFINITY), block_sum = _mm512_setzero_ps();
        for (int64_t k = 0; k < keys; k++) block_max = _mm512_max_ps(block_max, _mm512_loadu_ps(s + k * nr + j));
        const __m512 old_max = _mm512_loadu_ps(max + j), new_max = _mm512_max_ps(old_max, _mm512_mul_ps(block_max, vs));
        const __m512 correction = exp_avx512(_mm512_sub_ps(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(s + k * nr + j), vs, new_max));
            _mm512_storeu_ps(s + k * nr + j, e);
            block_sum = _mm512_add_ps(block_sum, e);
        }
        _mm512_storeu_ps(sum + j, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(sum + j), correction), block_sum));
        _mm512_storeu_ps(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++)
            _mm512_storeu_ps(o + d * nr + j, _mm512_mul_ps(_mm512_loadu_ps(o + d * nr + j), correction));
    }
}

/* sigmoid_gate_avx2's arithmetic on 16 lanes; a last part under 16 through the AVX2 kernel. */
static AVX512_TARGET void sigmoid_gate_avx512(float *x, const float *up, int64_t n, float alpha) {
    const __m512 one = _mm512_set1_ps(1.0f), neg_alpha = _mm512_set1_ps(-alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 g = _mm512_div_ps(v, _mm512_add_ps(one, exp_avx512(_mm512_mul_ps(neg_alpha, v))));
        if (up) g = _mm512_mul_ps(g, _mm512_loadu_ps(up + i));
        _mm512_storeu_ps(x + i, g);
    }
    sigmoid_gate_avx2(x + i, up ? up + i : NULL, n - i, alpha);
}

/* norm_sum_scalar's partials i mod 16 as two vectors of eight doubles. */
static AVX512_TARGET double norm_sum_avx512(const float *x, int64_t n, double shift, bool square) {
    const __m512d vshift = _mm512_set1_pd(shift);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vshift);
        __m512d c = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), vshift);
        lo = _mm512_add_pd(lo, square ? _mm512_mul_pd(a, a) : a);
        hi = _mm512_add_pd(hi, square ? _mm512_mul_pd(c, c) : c);
    }
    double partials[NORM_LANES];
    _mm512_storeu_pd(partials, lo);
    _mm512_storeu_pd(partials + 8, hi);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static AVX512_TARGET void norm_apply_avx512(float *y, const float *x, int64_t n, float shift, float inv, const float *w,
                                            const float *b) {
    const __m512 vshift = _mm512_set1_ps(shift), vinv = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vshift), vinv),
                                 _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, b ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i)) : v);
    }
}

static const kernel_ops kernel_ops_avx512_table = {
    KERNEL_AVX512, AVX512_MR, AVX512_NR, 384, gemm_micro_avx512, pack_strip_avx2, pack_rows_avx2, convert_f16_avx2, convert_bf16_avx2,
    dot_avx2, dot4_avx2, scale_add_avx512, row_max_avx512, exp_sum_avx512, softmax_step_avx512, sigmoid_gate_avx512,
    rotate_half_avx2, norm_sum_avx512, norm_apply_avx512,
};

static const kernel_ops *kernel_ops_avx2(void) { return &kernel_ops_avx2_table; }
static const kernel_ops *kernel_ops_avx512(void) { return &kernel_ops_avx512_table; }

/* ---- q8 (section 7's q8 part): AVX2 sign trick, AVX-512 VNNI ---- */

/* Row r's 32 quants (bytes in k order, as int8 or already offset) into the group's [k4][mr][4] layout. */
static inline void q8_scatter_quads(uint8_t *block, int mr, int r, const uint32_t quads[Q8_BLOCK / 4]) {
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) memcpy(block + ((size_t)k4 * mr + r) * 4, &quads[k4], 4);
}

static inline void q8_store_zero_row(uint8_t *block, int mr, int r) {
    static const int8_t zeros[Q8_BLOCK];
    q8_store_row_block(block, mr, r, zeros, 0.0f);
}

/* Appends the outliers of row r's block b (bit mask over k) and stores the block's scale and
 * compensation (from the sum of its quants). */
static inline void q8_finish_row_block(uint8_t *block, int mr, int r, int64_t b, const float *xb, uint32_t outlier_mask,
                                       int32_t quant_sum, float scale, q8_outlier *outliers, int *n_outliers) {
    q8_add_outliers(outliers, n_outliers, r, b, xb, outlier_mask);
    q8_store_row_scale(block, mr, r, quant_sum, scale);
}

/* Σ of 32 int8: vpsadbw on q + 128 (four partial sums) less 32·128. */
static inline AVX2_TARGET int32_t q8_quant_sum_avx2(__m256i bytes) {
    __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(bytes, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
    __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
    return _mm_cvtsi128_si32(sum) - 128 * Q8_BLOCK;
}

static inline AVX2_TARGET float hmax_avx2(__m256 m) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline AVX2_TARGET float hmin_avx2(__m256 m) {
    __m128 h = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_min_ps(h, _mm_movehl_ps(h, h));
    h = _mm_min_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* AVX2 quantizer: the arithmetic and the outlier rule of q8_quantize_block (max, min, counts, 127/amax,
 * one multiply, round to nearest even); non-finite and tiny blocks go through the definition itself. */
static AVX2_TARGET void q8_pack_rows_avx2(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                          q8_outlier *outliers, int *n_outliers) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(Q8_FLT_MAX);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_zero_row(block, mr, r);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            __m256 v[4], a[4], large[4];
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_ps(xb + 8 * i);
                a[i] = _mm256_and_ps(v[i], abs_mask);
            }
            __m256 bad = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(a[0], big, _CMP_NLE_UQ), _mm256_cmp_ps(a[1], big, _CMP_NLE_UQ)),
                                      _mm256_or_ps(_mm256_cmp_ps(a[2], big, _CMP_NLE_UQ), _mm256_cmp_ps(a[3], big, _CMP_NLE_UQ)));
            float amax = hmax_avx2(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
            if (_mm256_movemask_ps(bad) || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            __m256 quarter = _mm256_set1_ps(amax * 0.25f);
            uint32_t large_mask = 0;
            for (int i = 0; i < 4; i++) {
                large[i] = _mm256_cmp_ps(a[i], quarter, _CMP_GT_OQ);
                large_mask |= (uint32_t)_mm256_movemask_ps(large[i]) << (8 * i);
            }
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (__builtin_popcount(large_mask) <= Q8_OUTLIERS_MAX) {
                __m256 rest = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(large[0], a[0]), _mm256_andnot_ps(large[1], a[1])),
                                            _mm256_max_ps(_mm256_andnot_ps(large[2], a[2]), _mm256_andnot_ps(large[3], a[3])));
                __m256 low = _mm256_min_ps(_mm256_min_ps(_mm256_blendv_ps(inf, a[0], large[0]), _mm256_blendv_ps(inf, a[1], large[1])),
                                           _mm256_min_ps(_mm256_blendv_ps(inf, a[2], large[2]), _mm256_blendv_ps(inf, a[3], large[3])));
                float rest_max = hmax_avx2(rest);
                if (q8_outliers_apart(hmin_avx2(low), rest_max)) {
                    outlier_mask = large_mask;
                    qmax = rest_max;
                    for (int i = 0; i < 4; i++) v[i] = _mm256_andnot_ps(large[i], v[i]);
                }
            }
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_zero_row(block, mr, r);
                q8_finish_row_block(block, mr, r, b, xb, outlier_mask, 0, 0.0f, outliers, n_outliers);
                continue;
            }
            __m256 inv = _mm256_set1_ps(127.0f / qmax);
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], inv)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], inv));
            __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], inv)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], inv));
            __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            bytes = _mm256_permutevar8x32_epi32(bytes, order);
            uint32_t quads[Q8_BLOCK / 4];
            _mm256_storeu_si256((__m256i *)quads, bytes);
            q8_scatter_quads(block, mr, r, quads);
            q8_finish_row_block(block, mr, r, b, xb, outlier_mask, q8_quant_sum_avx2(bytes), qmax / 127.0f, outliers,
                                n_outliers);
        }
    }
}

#define Q8_AVX2_MR 4
#define Q8_AVX2_NR 16

/* 4 rows × 16 columns (two vectors of 8 per row: each x quad's |x| serves both). Per four k: |x| as
 * unsigned bytes times w with x's sign (vpsignb) in vpmaddubsw (pairs ≤ 2·127·127, no saturation),
 * vpmaddwd with ones into int32. The 8 int32 sums fill half the registers, so the float tile lives in
 * c (L1) and takes each block's fma there. */
static AVX2_TARGET void q8_micro_avx2(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                                      int64_t ldc, bool accumulate) {
    enum { MR = Q8_AVX2_MR, NR = Q8_AVX2_NR }; /* NR = Q8_STRIP: one whole strip */
    (void)b_hi;
    if (!accumulate)
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_ps(c + r * ldc, _mm256_setzero_ps());
            _mm256_storeu_ps(c + r * ldc + 8, _mm256_setzero_ps());
        }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        __m256i i00 = _mm256_setzero_si256(), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00, i31 = i00;
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(const void *)(bb + k4 * NR * 4));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(const void *)(bb + k4 * NR * 4 + 32));
            const uint8_t *quads = ab + k4 * MR * 4;
#define Q8_AVX2_ROW(r)                                                                                      \
    {                                                                                                       \
        const __m256i xv = _mm256_broadcastd_epi32(_mm_loadu_si32(quads + 4 * (r))), xa = _mm256_abs_epi8(xv); \
        i##r##0 = _mm256_add_epi32(i##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w0, xv)), ones)); \
        i##r##1 = _mm256_add_epi32(i##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w1, xv)), ones)); \
    }
            Q8_AVX2_ROW(0) Q8_AVX2_ROW(1) Q8_AVX2_ROW(2) Q8_AVX2_ROW(3)
#undef Q8_AVX2_ROW
        }
        const float *sw = (const float *)(const void *)(bb + NR * Q8_BLOCK);
        const float *sx = (const float *)(const void *)(ab + MR * Q8_BLOCK);
        const __m256 sw0 = _mm256_loadu_ps(sw), sw1 = _mm256_loadu_ps(sw + 8);
#define Q8_AVX2_SCALE(r)                                                                                    \
    {                                                                                                       \
        const __m256 s = _mm256_broadcast_ss(sx + (r));                                                     \
        float *cr = c + (r) * ldc;                                                                          \
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(_mm256_cvtepi32_ps(i##r##0), _mm256_mul_ps(s, sw0), _mm256_loadu_ps(cr))); \
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(i##r##1), _mm256_mul_ps(s, sw1), _mm256_loadu_ps(cr + 8))); \
    }
        Q8_AVX2_SCALE(0) Q8_AVX2_SCALE(1) Q8_AVX2_SCALE(2) Q8_AVX2_SCALE(3)
    }
}

/* q8_strip_outliers_fn: per outlier, byte k % 4 of each column's quad sign-extended by two shifts, then
 * the definition's two products and sum, eight columns at once (a last part under eight through the
 * definition). */
static AVX2_TARGET void q8_strip_outliers_avx2(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                               const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~7;
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES, quad = (size_t)(out->k / 4) * Q8_STRIP * 4;
        const __m128i up = _mm_cvtsi32_si128(24 - 8 * (out->k % 4)), down = _mm_cvtsi32_si128(24);
        const __m256 value = _mm256_set1_ps(out->value);
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 8) {
            const uint8_t *column = q8_strip_column(b + block, b_hi + block, j); /* 8 | 16: never straddles */
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(column + quad));
            __m256 w = _mm256_cvtepi32_ps(_mm256_sra_epi32(_mm256_sll_epi32(q, up), down));
            __m256 term = _mm256_mul_ps(value, _mm256_mul_ps(w, _mm256_loadu_ps((const float *)(const void *)(column + Q8_STRIP * Q8_BLOCK))));
            _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), term));
        }
        for (int j = whole; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

/* q4_strip_outliers_fn, 8 columns at a time: each column's 32-bit lane of nibble bytes shifted to the
 * outlier's nibble, q − 8 converted exactly, times the float16 scale (F16C, exact), then as the scalar
 * definition. Outlier channels are common in real activations: scalar, these cost q4 4 % of an
 * embedding at one thread (2026-12-07). */
static AVX2_TARGET void q4_strip_outliers_avx2(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int j0,
                                               int nj, const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~7;
    const __m256i nibble = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q4_STRIP_BLOCK_BYTES, row8 = (size_t)(out->k / 8) * Q8_STRIP * 4;
        const __m128i shift = _mm_cvtsi32_si128(8 * (out->k % 4) + (out->k % 8 < 4 ? 0 : 4));
        const __m256 value = _mm256_set1_ps(out->value);
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 8) {
            const int col = j0 + j; /* j0 is 0 or 8: eight columns never straddle the strips */
            const uint8_t *bb = (col < Q8_STRIP ? b : b_hi) + block;
            const int at = col % Q8_STRIP;
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(bb + row8 + (size_t)at * 4));
            const __m256i q = _mm256_sub_epi32(_mm256_and_si256(_mm256_srl_epi32(v, shift), nibble), eight);
            const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(bb + Q4_NIBBLE_BYTES + (size_t)at * 2)));
            const __m256 term = _mm256_mul_ps(value, _mm256_mul_ps(_mm256_cvtepi32_ps(q), scale));
            _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), term));
        }
        if (whole < nj) q4_strip_outliers(c + whole, ldc, b, b_hi, j0 + whole, nj - whole, out, 1);
    }
}

/* q4, 4 rows × 16 columns: per pair of quads the nibbles masked (k4 = 2p) and shifted (2p + 1) are
 * already unsigned q + 8 for vpmaddubsw (pairs ≤ 2·15·127), and each row's block sum starts at −8·Σqx
 * (its q8 compensation / 16), so the sums are the exact Σ qx·qw of the definition. */
static AVX2_TARGET void q4_micro_avx2(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, int j0,
                                      float *c, int64_t ldc, bool accumulate) {
    enum { MR = Q8_AVX2_MR, NR = Q8_AVX2_NR };
    (void)b_hi, (void)j0; /* one whole strip */
    if (!accumulate)
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_ps(c + r * ldc, _mm256_setzero_ps());
            _mm256_storeu_ps(c + r * ldc + 8, _mm256_setzero_ps());
        }
    const __m256i ones = _mm256_set1_epi16(1), nibble = _mm256_set1_epi8(15);
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q4_STRIP_BLOCK_BYTES;
        int32_t comps[MR];
        memcpy(comps, ab + MR * (Q8_BLOCK + 4), sizeof comps);
        __m256i i00 = _mm256_set1_epi32(comps[0] / 16), i01 = i00, i10 = _mm256_set1_epi32(comps[1] / 16), i11 = i10;
        __m256i i20 = _mm256_set1_epi32(comps[2] / 16), i21 = i20, i30 = _mm256_set1_epi32(comps[3] / 16), i31 = i30;
        for (int p = 0; p < Q8_BLOCK / 8; p++) {
            const __m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)(bb + p * NR * 4));
            const __m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(bb + p * NR * 4 + 32));
            for (int half = 0; half < 2; half++) {
                const __m256i w0 = _mm256_and_si256(half ? _mm256_srli_epi16(v0, 4) : v0, nibble);
                const __m256i w1 = _mm256_and_si256(half ? _mm256_srli_epi16(v1, 4) : v1, nibble);
                const uint8_t *quads = ab + (2 * p + half) * MR * 4;
#define Q4_AVX2_ROW(r)                                                                                      \
    {                                                                                                       \
        const __m256i xv = _mm256_broadcastd_epi32(_mm_loadu_si32(quads + 4 * (r)));                        \
        i##r##0 = _mm256_add_epi32(i##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(w0, xv), ones));         \
        i##r##1 = _mm256_add_epi32(i##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(w1, xv), ones));         \
    }
                Q4_AVX2_ROW(0) Q4_AVX2_ROW(1) Q4_AVX2_ROW(2) Q4_AVX2_ROW(3)
#undef Q4_AVX2_ROW
            }
        }
        const float *sx = (const float *)(const void *)(ab + MR * Q8_BLOCK);
        const __m256 sw0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(bb + Q4_NIBBLE_BYTES)));
        const __m256 sw1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(bb + Q4_NIBBLE_BYTES + 16)));
        Q8_AVX2_SCALE(0) Q8_AVX2_SCALE(1) Q8_AVX2_SCALE(2) Q8_AVX2_SCALE(3) /* q8_micro_avx2's float step */
#undef Q8_AVX2_SCALE
    }
}

static const q8_kernels q8_kernels_avx2_table = {
    "avx2", Q8_AVX2_MR, Q8_AVX2_NR, 128, q8_micro_avx2, q8_pack_rows_avx2, q8_strip_outliers_avx2, q4_micro_avx2,
    q4_strip_outliers_avx2,
};

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* AVX-512 quantizer: as q8_pack_rows_avx2. */
static VNNI_TARGET void q8_pack_rows_vnni(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                          q8_outlier *outliers, int *n_outliers) {
    const __m512 big = _mm512_set1_ps(Q8_FLT_MAX), inf = _mm512_set1_ps(INFINITY);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_zero_row(block, mr, r);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
            __mmask16 bad = _mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
            if (bad || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            __m512 quarter = _mm512_set1_ps(amax * 0.25f);
            __mmask16 l0 = _mm512_cmp_ps_mask(a0, quarter, _CMP_GT_OQ), l1 = _mm512_cmp_ps_mask(a1, quarter, _CMP_GT_OQ);
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (__builtin_popcount((unsigned)l0) + __builtin_popcount((unsigned)l1) <= Q8_OUTLIERS_MAX) {
                float rest = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_maskz_mov_ps((__mmask16)~l0, a0),
                                                                _mm512_maskz_mov_ps((__mmask16)~l1, a1)));
                float low = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_mask_mov_ps(inf, l0, a0), _mm512_mask_mov_ps(inf, l1, a1)));
                if (q8_outliers_apart(low, rest)) {
                    outlier_mask = (uint32_t)l0 | (uint32_t)l1 << 16;
                    qmax = rest;
                    v0 = _mm512_maskz_mov_ps((__mmask16)~l0, v0);
                    v1 = _mm512_maskz_mov_ps((__mmask16)~l1, v1);
                }
            }
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_zero_row(block, mr, r);
                q8_finish_row_block(block, mr, r, b, xb, outlier_mask, 0, 0.0f, outliers, n_outliers);
                continue;
            }
            __m512 inv = _mm512_set1_ps(127.0f / qmax);
            __m128i b0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
            __m128i b1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
            __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(b0), b1, 1);
            uint32_t quads[Q8_BLOCK / 4];
            _mm256_storeu_si256((__m256i *)quads, bytes);
            q8_scatter_quads(block, mr, r, quads);
            q8_finish_row_block(block, mr, r, b, xb, outlier_mask, q8_quant_sum_avx2(bytes), qmax / 127.0f, outliers,
                                n_outliers);
        }
    }
}

#define Q8_VNNI_MR 4
#define Q8_VNNI_NR 32
#define Q8_VNNI_ROWS(X) X(0) X(1) X(2) X(3)

/* The VNNI micro-kernels' steps (q8_micro_vnni, q4_micro_vnni): per row r, float accumulators f·l/f·h
 * (columns 0..15, 16..31), int32 block sums s·l/s·h started at the row's compensation / COMP_DIV. */
#define VNNI_DECLARE(r)                                                                     \
    __m512 f##r##l = accumulate ? _mm512_loadu_ps(c + (r) * ldc) : _mm512_setzero_ps();     \
    __m512 f##r##h = accumulate ? _mm512_loadu_ps(c + (r) * ldc + 16) : _mm512_setzero_ps(); \
    __m512i s##r##l, s##r##h;
#define VNNI_START(r) s##r##l = s##r##h = _mm512_set1_epi32(comps[r] / COMP_DIV);
#define VNNI_STEP(r)                                                                        \
    {                                                                                       \
        int32_t q;                                                                          \
        memcpy(&q, ab + (k4 * MR + (r)) * 4, 4);                                            \
        __m512i xv = _mm512_set1_epi32(q);                                                  \
        s##r##l = _mm512_dpbusd_epi32(s##r##l, w0, xv);                                     \
        s##r##h = _mm512_dpbusd_epi32(s##r##h, w1, xv);                                     \
    }
#define VNNI_SCALE(r)                                                                       \
    {                                                                                       \
        __m512 sx = _mm512_set1_ps(sxs[r]);                                                 \
        f##r##l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##l), _mm512_mul_ps(sx, sw_l), f##r##l);          \
        f##r##h = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##h), _mm512_mul_ps(sx, sw_h), f##r##h);          \
    }
#define VNNI_STORE(r) _mm512_storeu_ps(c + (r) * ldc, f##r##l), _mm512_storeu_ps(c + (r) * ldc + 16, f##r##h);

/* 4 rows × 32 columns (two strips): 8 int32 block accumulators started at each row's −128·Σqx, 8 float
 * accumulators. vpdpbusd adds (w+128)·qx over four k per lane (weights flipped to unsigned by one xor
 * per vector): the block sum is exact. Four rows, not the six the registers would hold: on Zen 5 the
 * 4-row tile ran 720–734 GOP/s on L1-resident data against 700 for 6 rows (5 rows: 723), and the
 * model's shapes 3 % faster (2026-12-04). */
static VNNI_TARGET void q8_micro_vnni(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                                      int64_t ldc, bool accumulate) {
    enum { MR = Q8_VNNI_MR, NR = Q8_VNNI_NR, COMP_DIV = 1 };
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    Q8_VNNI_ROWS(VNNI_DECLARE)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR);
        const uint8_t *bl = b + blk * Q8_STRIP_BLOCK_BYTES, *bh = b_hi + blk * Q8_STRIP_BLOCK_BYTES;
        int32_t comps[MR];
        memcpy(comps, ab + MR * (Q8_BLOCK + 4), sizeof comps);
        Q8_VNNI_ROWS(VNNI_START)
        /* written out: with a loop GCC copies every accumulator twice per step */
#define VNNI_K4(step)                                                                       \
    {                                                                                       \
        const int k4 = (step);                                                              \
        const __m512i w0 = _mm512_xor_si512(_mm512_load_si512((const void *)(bl + k4 * Q8_STRIP * 4)), flip); \
        const __m512i w1 = _mm512_xor_si512(_mm512_load_si512((const void *)(bh + k4 * Q8_STRIP * 4)), flip); \
        Q8_VNNI_ROWS(VNNI_STEP)                                                             \
    }
        VNNI_K4(0) VNNI_K4(1) VNNI_K4(2) VNNI_K4(3) VNNI_K4(4) VNNI_K4(5) VNNI_K4(6) VNNI_K4(7)
#undef VNNI_K4
        const __m512 sw_l = _mm512_load_ps((const void *)(bl + Q8_STRIP * Q8_BLOCK));
        const __m512 sw_h = _mm512_load_ps((const void *)(bh + Q8_STRIP * Q8_BLOCK));
        float sxs[MR];
        memcpy(sxs, ab + MR * Q8_BLOCK, sizeof sxs);
        Q8_VNNI_ROWS(VNNI_SCALE)
    }
    Q8_VNNI_ROWS(VNNI_STORE)
}

/* q4, 4 rows × 32 columns: q8_micro_vnni with the weights' unsigned bytes taken from the nibbles
 * (masked for k4 = 2p, shifted for 2p + 1: q + 8, no flip) and the block sums started at −8·Σqx. */
static VNNI_TARGET void q4_micro_vnni(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, int j0,
                                      float *c, int64_t ldc, bool accumulate) {
    enum { MR = Q8_VNNI_MR, NR = Q8_VNNI_NR, COMP_DIV = 16 };
    (void)j0; /* two whole strips */
    const __m512i nibble = _mm512_set1_epi8(15);
    Q8_VNNI_ROWS(VNNI_DECLARE)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR);
        const uint8_t *bl = b + blk * Q4_STRIP_BLOCK_BYTES, *bh = b_hi + blk * Q4_STRIP_BLOCK_BYTES;
        int32_t comps[MR];
        memcpy(comps, ab + MR * (Q8_BLOCK + 4), sizeof comps);
        Q8_VNNI_ROWS(VNNI_START)
#define VNNI_P(p)                                                                           \
    {                                                                                       \
        const __m512i vl = _mm512_loadu_si512((const void *)(bl + (p) * Q8_STRIP * 4));     \
        const __m512i vh = _mm512_loadu_si512((const void *)(bh + (p) * Q8_STRIP * 4));     \
        {                                                                                   \
            const int k4 = 2 * (p);                                                         \
            const __m512i w0 = _mm512_and_si512(vl, nibble), w1 = _mm512_and_si512(vh, nibble); \
            Q8_VNNI_ROWS(VNNI_STEP)                                                         \
        }                                                                                   \
        {                                                                                   \
            const int k4 = 2 * (p) + 1;                                                     \
            const __m512i w0 = _mm512_and_si512(_mm512_srli_epi16(vl, 4), nibble);         \
            const __m512i w1 = _mm512_and_si512(_mm512_srli_epi16(vh, 4), nibble);         \
            Q8_VNNI_ROWS(VNNI_STEP)                                                         \
        }                                                                                   \
    }
        VNNI_P(0) VNNI_P(1) VNNI_P(2) VNNI_P(3)
#undef VNNI_P
        const __m512 sw_l = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(bl + Q4_NIBBLE_BYTES)));
        const __m512 sw_h = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(bh + Q4_NIBBLE_BYTES)));
        float sxs[MR];
        memcpy(sxs, ab + MR * Q8_BLOCK, sizeof sxs);
        Q8_VNNI_ROWS(VNNI_SCALE)
    }
    Q8_VNNI_ROWS(VNNI_STORE)
#undef VNNI_DECLARE
#undef VNNI_START
#undef VNNI_STEP
#undef VNNI_SCALE
#undef VNNI_STORE
}

static const q8_kernels q8_kernels_vnni_table = {
    /* outliers are ~0.3 % of a q8 embedding: no 512-bit copy */
    "avx512-vnni", Q8_VNNI_MR, Q8_VNNI_NR, 512, q8_micro_vnni, q8_pack_rows_vnni, q8_strip_outliers_avx2, q4_micro_vnni,
    q4_strip_outliers_avx2,
};

static const q8_kernels *q8_kernels_avx2(void) { return &q8_kernels_avx2_table; }
static const q8_kernels *q8_kernels_avx512vnni(void) { return &q8_kernels_vnni_table; }

#else /* not x86-64, or a scalar-only build */
static const kernel_ops *kernel_ops_avx2(void) { return NULL; }
static const kernel_ops *kernel_ops_avx512(void) { return NULL; }
static const q8_kernels *q8_kernels_avx2(void) { return NULL; }
static const q8_kernels *q8_kernels_avx512vnni(void) { return NULL; }
#endif

/* ================================================================================================
 * 7c. Kernels for Arm: NEON on aarch64 (always present there) and on 32-bit Arm (armv7-a with
 * neon-vfpv4, path "neon32", when the CPU reports NEON and VFPv4).
 *
 * One set of kernels serves both; the few aarch64-only intrinsics go through the neon_* helpers below,
 * which on armv7 compute the same values in the same order (pairwise adds for across-vector sums,
 * round-to-nearest-even by the 1.5·2^23 trick, division lane by lane). What armv7 cannot share: the GEMM
 * micro-kernel (16 vector registers, no fma by lane: 6×8 with broadcast loads), the double-precision
 * norm sum (no f64 vectors: the scalar definition) and sdot (the vmull/vpadal q8 and q4 kernels only).
 * armv7's NEON always flushes subnormal floats to zero, so there results match the scalar definitions
 * (and aarch64) bit for bit except where an operand or result is subnormal.
 * ================================================================================================ */

#if defined(ABC_NEON_KERNELS)

#if defined(__aarch64__)
static inline float neon_addv_f32(float32x4_t v) { return vaddvq_f32(v); }
static inline float neon_maxv_f32(float32x4_t v) { return vmaxvq_f32(v); }
static inline float neon_minv_f32(float32x4_t v) { return vminvq_f32(v); }
static inline uint32_t neon_addv_u32(uint32x4_t v) { return vaddvq_u32(v); }
static inline int32_t neon_addv_s32(int32x4_t v) { return vaddvq_s32(v); }
static inline uint32_t neon_minv_u32(uint32x4_t v) { return vminvq_u32(v); }
static inline int32_t neon_addlv_s8(int8x16_t v) { return vaddlvq_s8(v); }
static inline float32x4_t neon_round_f32(float32x4_t v) { return vrndnq_f32(v); }
static inline int32x4_t neon_round_s32(float32x4_t v) { return vcvtnq_s32_f32(v); }
static inline float32x4_t neon_div_f32(float32x4_t a, float32x4_t b) { return vdivq_f32(a, b); }
static inline int16x8_t neon_mull_high_s8(int8x16_t a, int8x16_t b) { return vmull_high_s8(a, b); }
static inline int32x4_t neon_padd_s32(int32x4_t a, int32x4_t b) { return vpaddq_s32(a, b); }
static inline float32x4_t neon_f16_to_f32(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
#else
/* Across-vector reductions as two pairwise steps: for the sum (v0 + v1) + (v2 + v3), the order of
 * aarch64's faddp pair; max and min are exact in any order. */
#define NEON_PAIRWISE_REDUCE(name, type, sfx, op)                          \
    static inline type##_t name(type##x4_t v) {                           \
        type##x2_t p = op##_##sfx(vget_low_##sfx(v), vget_high_##sfx(v)); \
        return vget_lane_##sfx(op##_##sfx(p, p), 0);                      \
    }
NEON_PAIRWISE_REDUCE(neon_addv_f32, float32, f32, vpadd)
NEON_PAIRWISE_REDUCE(neon_maxv_f32, float32, f32, vpmax)
NEON_PAIRWISE_REDUCE(neon_minv_f32, float32, f32, vpmin)
NEON_PAIRWISE_REDUCE(neon_addv_u32, uint32, u32, vpadd)
NEON_PAIRWISE_REDUCE(neon_minv_u32, uint32, u32, vpmin)
#undef NEON_PAIRWISE_REDUCE
static inline int32_t neon_addv_s32(int32x4_t v) { return (int32_t)neon_addv_u32(vreinterpretq_u32_s32(v)); }
static inline int32_t neon_addlv_s8(int8x16_t v) {
    int64x2_t s = vpaddlq_s32(vpaddlq_s16(vpaddlq_s8(v)));
    return (int32_t)(vgetq_lane_s64(s, 0) + vgetq_lane_s64(s, 1));
}
/* round to nearest even, exact for |v| < 2^22 (every caller's range): NEON rounds to nearest */
static inline float32x4_t neon_round_f32(float32x4_t v) {
    const float32x4_t magic = vdupq_n_f32(12582912.0f); /* 1.5·2^23 */
    return vsubq_f32(vaddq_f32(v, magic), magic);
}
static inline int32x4_t neon_round_s32(float32x4_t v) { return vcvtq_s32_f32(neon_round_f32(v)); }
/* no vector division before aarch64: VFP's correctly rounded one, lane by lane */
static inline float32x4_t neon_div_f32(float32x4_t a, float32x4_t b) {
    float x[4], y[4];
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (int i = 0; i < 4; i++) x[i] = x[i] / y[i];
    return vld1q_f32(x);
}
static inline int16x8_t neon_mull_high_s8(int8x16_t a, int8x16_t b) { return vmull_s8(vget_high_s8(a), vget_high_s8(b)); }
static inline int32x4_t neon_padd_s32(int32x4_t a, int32x4_t b) {
    return vcombine_s32(vpadd_s32(vget_low_s32(a), vget_high_s32(a)), vpadd_s32(vget_low_s32(b), vget_high_s32(b)));
}
/* abc_f16_to_f32 on four lanes in integer arithmetic (the half-float intrinsics need -mfp16-format):
 * subnormals as mantissa · 2^-24 (normal in f32, so untouched by flush-to-zero), inf/NaN keep the payload */
static inline float32x4_t neon_f16_to_f32(uint16x4_t h) {
    const uint32x4_t x = vmovl_u16(h), em = vandq_u32(x, vdupq_n_u32(0x7fff));
    const uint32x4_t sign = vshlq_n_u32(vandq_u32(x, vdupq_n_u32(0x8000)), 16);
    uint32x4_t normal = vaddq_u32(vshlq_n_u32(em, 13), vdupq_n_u32(112u << 23));
    uint32x4_t special = vaddq_u32(normal, vdupq_n_u32(112u << 23));
    float32x4_t sub = vmulq_f32(vcvtq_f32_u32(em), vdupq_n_f32(5.9604644775390625e-08f));
    uint32x4_t r = vbslq_u32(vcgeq_u32(em, vdupq_n_u32(0x7c00)), special, normal);
    r = vbslq_u32(vcltq_u32(em, vdupq_n_u32(0x0400)), vreinterpretq_u32_f32(sub), r);
    return vreinterpretq_f32_u32(vorrq_u32(r, sign));
}
#endif

#if defined(__aarch64__)
#define NEON_MR 6
#define NEON_NR 16

/* 6 rows × 16 columns: 24 accumulators, 4 for B, 2 for the packed A column. Written out row by row:
 * at -O2 compilers keep arrays of vectors in memory. */
#define NEON_ROWS(X) X(0, a03, laneq_f32, 0) X(1, a03, laneq_f32, 1) X(2, a03, laneq_f32, 2) \
    X(3, a03, laneq_f32, 3) X(4, a45, lane_f32, 0) X(5, a45, lane_f32, 1)

static void gemm_micro_neon(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate) {
#define NEON_DECLARE(i, src, kind, lane) \
    float32x4_t c##i##0 = vdupq_n_f32(0.0f), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define NEON_STEP(i, src, kind, lane)                     \
    c##i##0 = vfmaq_##kind(c##i##0, b0, src, lane);       \
    c##i##1 = vfmaq_##kind(c##i##1, b1, src, lane);       \
    c##i##2 = vfmaq_##kind(c##i##2, b2, src, lane);       \
    c##i##3 = vfmaq_##kind(c##i##3, b3, src, lane);
#define NEON_STORE(i, src, kind, lane)                                        \
    if (accumulate) {                                                         \
        c##i##0 = vaddq_f32(vld1q_f32(c + (i) * ldc), c##i##0);               \
        c##i##1 = vaddq_f32(vld1q_f32(c + (i) * ldc + 4), c##i##1);           \
        c##i##2 = vaddq_f32(vld1q_f32(c + (i) * ldc + 8), c##i##2);           \
        c##i##3 = vaddq_f32(vld1q_f32(c + (i) * ldc + 12), c##i##3);          \
    }                                                                         \
    vst1q_f32(c + (i) * ldc, c##i##0);                                        \
    vst1q_f32(c + (i) * ldc + 4, c##i##1);                                    \
    vst1q_f32(c + (i) * ldc + 8, c##i##2);                                    \
    vst1q_f32(c + (i) * ldc + 12, c##i##3);
    NEON_ROWS(NEON_DECLARE)
    for (int64_t k = 0; k < kc; k++, a += NEON_MR, b += NEON_NR) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        float32x4_t a03 = vld1q_f32(a);
        float32x2_t a45 = vld1_f32(a + 4);
        NEON_ROWS(NEON_STEP)
    }
    NEON_ROWS(NEON_STORE)
#undef NEON_DECLARE
#undef NEON_STEP
#undef NEON_STORE
}
#else
/* armv7: 6 rows × 8 columns, 12 accumulators + 2 for B + 1 broadcast of A in the 16 q registers (VFMA
 * has no by-lane form here). Each element's arithmetic is the aarch64 kernel's: fmas from 0 in k order,
 * then c added. */
#define NEON_MR 6
#define NEON_NR 8
static void gemm_micro_neon(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate) {
#define NEON_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define NEON_DECLARE(i) float32x4_t c##i##0 = vdupq_n_f32(0.0f), c##i##1 = c##i##0;
#define NEON_STEP(i)                                  \
    {                                                 \
        float32x4_t ai = vld1q_dup_f32(a + (i));      \
        c##i##0 = vfmaq_f32(c##i##0, b0, ai);         \
        c##i##1 = vfmaq_f32(c##i##1, b1, ai);         \
    }
#define NEON_STORE(i)                                                         \
    if (accumulate) {                                                         \
        c##i##0 = vaddq_f32(vld1q_f32(c + (i) * ldc), c##i##0);               \
        c##i##1 = vaddq_f32(vld1q_f32(c + (i) * ldc + 4), c##i##1);           \
    }                                                                         \
    vst1q_f32(c + (i) * ldc, c##i##0);                                        \
    vst1q_f32(c + (i) * ldc + 4, c##i##1);
    NEON_ROWS(NEON_DECLARE)
    for (int64_t k = 0; k < kc; k++, a += NEON_MR, b += NEON_NR) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        NEON_ROWS(NEON_STEP)
    }
    NEON_ROWS(NEON_STORE)
#undef NEON_ROWS
#undef NEON_DECLARE
#undef NEON_STEP
#undef NEON_STORE
}
#endif

static inline float32x4_t load4_as_f32_neon(const void *w, uint32_t dtype, int64_t at) {
    if (dtype == DT_F32) return vld1q_f32((const float *)w + at);
    uint16x4_t h = vld1_u16((const uint16_t *)w + at);
    if (dtype == DT_F16) return neon_f16_to_f32(h);
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static void convert_f16_neon(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load4_as_f32_neon(src, DT_F16, i));
    for (; i < count; i++) dst[i] = abc_f16_to_f32(((const uint16_t *)src)[i]);
}

static void convert_bf16_neon(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load4_as_f32_neon(src, DT_BF16, i));
    for (; i < count; i++) dst[i] = abc_bf16_to_f32(((const uint16_t *)src)[i]);
}

/* 4×4 transpose of r[0..3] in place. */
static inline void transpose4_neon(float32x4_t r[4]) {
    float32x4x2_t t01 = vtrnq_f32(r[0], r[1]), t23 = vtrnq_f32(r[2], r[3]);
    r[0] = vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0]));
    r[1] = vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1]));
    r[2] = vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0]));
    r[3] = vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1]));
}

static inline void pack_rows4_neon(float *strip, int nr, int j0, const void *w, uint32_t dtype, int64_t ld, int64_t row0,
                                   int64_t k0, int64_t kc) {
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t r[4];
        for (int j = 0; j < 4; j++) r[j] = load4_as_f32_neon(w, dtype, (row0 + j) * ld + k0 + k);
        transpose4_neon(r);
        for (int kk = 0; kk < 4; kk++) vst1q_f32(strip + (k + kk) * nr + j0, r[kk]);
    }
    for (; k < kc; k++)
        for (int j = 0; j < 4; j++) strip[k * nr + j0 + j] = weight_element(w, dtype, (row0 + j) * ld + k0 + k);
}

static void pack_strip_neon(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                            int64_t k0, int64_t kc) {
    for (int j0 = 0; j0 < nr; j0 += 4) {
        if (j0 + 4 <= rows) {
            bool packed = true;
            switch (dtype) {
            case DT_F32: pack_rows4_neon(strip, nr, j0, w, DT_F32, ld, row0 + j0, k0, kc); break;
            case DT_F16: pack_rows4_neon(strip, nr, j0, w, DT_F16, ld, row0 + j0, k0, kc); break;
            case DT_BF16: pack_rows4_neon(strip, nr, j0, w, DT_BF16, ld, row0 + j0, k0, kc); break;
            default: packed = false; break;
            }
            if (packed) continue;
        }
        for (int j = j0; j < j0 + 4; j++)
            for (int64_t k = 0; k < kc; k++)
                strip[k * nr + j] = j < rows ? weight_element(w, dtype, (row0 + j) * ld + k0 + k) : 0.0f;
    }
}

/* Rows of x into [kc][mr], four rows × four columns per transpose; stores run in increasing address
 * order so a group's lanes beyond mr are overwritten by the next k (the last land in the slack). */
static void pack_rows_neon(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    int groups = (mr + 3) / 4;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t r[4][4];
        for (int g = 0; g < groups; g++) {
            for (int j = 0; j < 4; j++) {
                int row = g * 4 + j;
                r[g][j] = row < rows && row < mr ? vld1q_f32(x + row * ldx + k) : vdupq_n_f32(0.0f);
            }
            transpose4_neon(r[g]);
        }
        for (int kk = 0; kk < 4; kk++)
            for (int g = 0; g < groups; g++) vst1q_f32(a_pack + (k + kk) * mr + g * 4, r[g][kk]);
    }
    for (; k < kc; k++)
        for (int row = 0; row < mr; row++) a_pack[k * mr + row] = row < rows ? x[row * ldx + k] : 0.0f;
}

static float dot_neon(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    if (i + 4 <= n) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        i += 4;
    }
    float sum = neon_addv_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Four dot_neons sharing the loads of w (same arithmetic per row as dot_neon). */
static void dot4_neon(const float *w, const float *const x[4], int64_t n, float out[4]) {
    float32x4_t a[4], b[4];
    for (int r = 0; r < 4; r++) a[r] = b[r] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t wl = vld1q_f32(w + i), wh = vld1q_f32(w + i + 4);
#define NEON_DOT4_ROW(r)                                      \
        a[r] = vfmaq_f32(a[r], vld1q_f32(x[r] + i), wl);      \
        b[r] = vfmaq_f32(b[r], vld1q_f32(x[r] + i + 4), wh);
        NEON_DOT4_ROW(0) NEON_DOT4_ROW(1) NEON_DOT4_ROW(2) NEON_DOT4_ROW(3)
#undef NEON_DOT4_ROW
    }
    if (i + 4 <= n) {
        float32x4_t wl = vld1q_f32(w + i);
        for (int r = 0; r < 4; r++) a[r] = vfmaq_f32(a[r], vld1q_f32(x[r] + i), wl);
        i += 4;
    }
    for (int r = 0; r < 4; r++) {
        float s = neon_addv_f32(vaddq_f32(a[r], b[r]));
        for (int64_t k = i; k < n; k++) s += x[r][k] * w[k];
        out[r] = s;
    }
}

static void scale_add_neon(float *y, float alpha, const float *x, float beta, int64_t n) {
    float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vmulq_f32(va, vld1q_f32(y + i)), vb, vld1q_f32(x + i)));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static float row_max_neon(const float *x, int64_t n) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) m = vmaxq_f32(m, vld1q_f32(x + i));
    float r = neon_maxv_f32(m);
    for (; i < n; i++) r = MAX(r, x[i]);
    return r;
}

/* e^x as in exp_avx2 (section 7b): 2^n · e^r, degree-7 polynomial, x clamped to [−87.3, 88.37]. */
static inline float32x4_t exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.37f));
    float32x4_t n = neon_round_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* softmax_step on 4 lanes at a time (nr a multiple of 4). */
static void softmax_step_neon(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                              int64_t o_rows) {
    const float32x4_t vs = vdupq_n_f32(scale);
    for (int j = 0; j < nr; j += 4) {
        float32x4_t block_max = vdupq_n_f32(-INFINITY), block_sum = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < keys; k++) block_max = vmaxq_f32(block_max, vld1q_f32(s + k * nr + j));
        const float32x4_t old_max = vld1q_f32(max + j), new_max = vmaxq_f32(old_max, vmulq_f32(block_max, vs));
        const float32x4_t correction = exp_neon(vsubq_f32(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(s + k * nr + j), vs), new_max));
            vst1q_f32(s + k * nr + j, e);
            block_sum = vaddq_f32(block_sum, e);
        }
        vst1q_f32(sum + j, vaddq_f32(vmulq_f32(vld1q_f32(sum + j), correction), block_sum));
        vst1q_f32(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++) vst1q_f32(o + d * nr + j, vmulq_f32(vld1q_f32(o + d * nr + j), correction));
    }
}

static float exp_sum_neon(float *s, int64_t n, float scale, float max) {
    float32x4_t vs = vdupq_n_f32(scale), vm = vdupq_n_f32(max), sum = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(s + i), vs), vm));
        vst1q_f32(s + i, e);
        sum = vaddq_f32(sum, e);
    }
    if (i < n) {
        float tail[4] = {0};
        int64_t rest = n - i;
        memcpy(tail, s + i, (size_t)rest * sizeof(float));
        float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(tail), vs), vm));
        vst1q_f32(tail, e);
        for (int64_t j = rest; j < 4; j++) tail[j] = 0.0f;
        memcpy(s + i, tail, (size_t)rest * sizeof(float));
        sum = vaddq_f32(sum, vld1q_f32(tail));
    }
    return neon_addv_f32(sum);
}

/* x·σ(α·x) = x / (1 + e^(−α·x)) (· up), as sigmoid_gate_avx2; the tail through the scalar definition. */
static void sigmoid_gate_neon(float *x, const float *up, int64_t n, float alpha) {
    const float32x4_t one = vdupq_n_f32(1.0f), neg_alpha = vdupq_n_f32(-alpha);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t g = neon_div_f32(v, vaddq_f32(one, exp_neon(vmulq_f32(neg_alpha, v))));
        if (up) g = vmulq_f32(g, vld1q_f32(up + i));
        vst1q_f32(x + i, g);
    }
    sigmoid_gate_scalar(x + i, up ? up + i : NULL, n - i, alpha);
}

static void rotate_half_neon(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
        float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + i + half);
        float32x4_t c = vld1q_f32(cos_a + i), s = vld1q_f32(sin_a + i);
        vst1q_f32(v + i, vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
        vst1q_f32(v + i + half, vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
    }
    rotate_half_tail(v + i, cos_a + i, sin_a + i, half - i, half);
}

#if defined(__aarch64__)
/* norm_sum_scalar's partials i mod 16 as eight vectors of two doubles. */
static double norm_sum_neon(const float *x, int64_t n, double shift, bool square) {
    const float64x2_t vshift = vdupq_n_f64(shift);
    float64x2_t p[8];
    for (int q = 0; q < 8; q++) p[q] = vdupq_n_f64(0.0);
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int q = 0; q < 4; q++) {
            float32x4_t v = vld1q_f32(x + i + 4 * q);
            float64x2_t lo = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), vshift), hi = vsubq_f64(vcvt_high_f64_f32(v), vshift);
            p[2 * q] = vaddq_f64(p[2 * q], square ? vmulq_f64(lo, lo) : lo);
            p[2 * q + 1] = vaddq_f64(p[2 * q + 1], square ? vmulq_f64(hi, hi) : hi);
        }
    double partials[NORM_LANES];
    for (int q = 0; q < 8; q++) vst1q_f64(partials + 2 * q, p[q]);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}
#else
#define norm_sum_neon norm_sum_scalar /* armv7 NEON has no doubles: VFP runs the definition */
#endif

static void norm_apply_neon(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b) {
    const float32x4_t vshift = vdupq_n_f32(shift), vinv = vdupq_n_f32(inv);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), vshift), vinv), vld1q_f32(w + i));
        vst1q_f32(y + i, b ? vaddq_f32(v, vld1q_f32(b + i)) : v);
    }
    norm_apply_scalar(y + i, x + i, n - i, shift, inv, w + i, b ? b + i : NULL);
}

static const kernel_ops kernel_ops_neon_table = {
    KERNEL_NEON, NEON_MR, NEON_NR, 192, gemm_micro_neon, pack_strip_neon, pack_rows_neon, convert_f16_neon,
    convert_bf16_neon, dot_neon, dot4_neon, scale_add_neon, row_max_neon, exp_sum_neon, softmax_step_neon,
    sigmoid_gate_neon, rotate_half_neon, norm_sum_neon, norm_apply_neon,
};

static const kernel_ops *kernel_ops_neon(void) { return &kernel_ops_neon_table; }

/* ---- q8 (section 7's q8 part): sdot when the CPU has it (HWCAP asimddp), else smull + sadalp
 * (armv7: always the latter, vmull.s8 + vpadal.s16) ---- */

#define Q8_NEON_MR 4
#define Q8_NEON_NR 8

/* The float step of one block for a row: fma((float)isum, sx · sw, acc), as in the scalar kernel. */
static inline float32x4_t q8_neon_scale(float32x4_t acc, int32x4_t isum, float sx, float32x4_t sw) {
    return vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_n_f32(sw, sx));
}

#if defined(__aarch64__)
/* acc.4s += b.16b · a.4b[lane] (SDOT by element). Inline assembly: this file is built for baseline
 * aarch64, and clang's intrinsic exists only when the whole unit targets dotprod. The instruction is
 * allowed by the function's target (clang) or by an .arch directive (GCC's assembler). */
#if defined(__clang__)
#define Q8_DOTPROD_TARGET __attribute__((target("dotprod")))
#define Q8_SDOT_ARCH ""
#else
#define Q8_DOTPROD_TARGET
#define Q8_SDOT_ARCH ".arch armv8.2-a+dotprod\n\t"
#endif
#define Q8_SDOT_LANE(acc, b, a, lane)                                                                   \
    __asm__(Q8_SDOT_ARCH "sdot %0.4s, %1.16b, %2.4b[" #lane "]" : "+w"(acc) : "w"(b), "w"(a))

/* Both kernels take half a strip: b is moved to the strip's column 0 or 8 (quads Q8_STRIP·4 bytes apart). */
static Q8_DOTPROD_TARGET void q8_micro_neon_dot(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi,
                                                float *c, int64_t ldc, bool accumulate) {
    enum { MR = Q8_NEON_MR, NR = Q8_NEON_NR };
    (void)b_hi;
    float32x4_t f00, f01, f10, f11, f20, f21, f30, f31;
    if (accumulate) {
        f00 = vld1q_f32(c), f01 = vld1q_f32(c + 4), f10 = vld1q_f32(c + ldc), f11 = vld1q_f32(c + ldc + 4);
        f20 = vld1q_f32(c + 2 * ldc), f21 = vld1q_f32(c + 2 * ldc + 4);
        f30 = vld1q_f32(c + 3 * ldc), f31 = vld1q_f32(c + 3 * ldc + 4);
    } else {
        f00 = f01 = f10 = f11 = f20 = f21 = f30 = f31 = vdupq_n_f32(0.0f);
    }
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        int32x4_t s00 = vdupq_n_s32(0), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            int8x16_t av = vld1q_s8((const int8_t *)ab + k4 * MR * 4);
            int8x16_t b0 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4), b1 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4 + 16);
            Q8_SDOT_LANE(s00, b0, av, 0);
            Q8_SDOT_LANE(s01, b1, av, 0);
            Q8_SDOT_LANE(s10, b0, av, 1);
            Q8_SDOT_LANE(s11, b1, av, 1);
            Q8_SDOT_LANE(s20, b0, av, 2);
            Q8_SDOT_LANE(s21, b1, av, 2);
            Q8_SDOT_LANE(s30, b0, av, 3);
            Q8_SDOT_LANE(s31, b1, av, 3);
        }
        const float *sw = (const float *)(const void *)(bb + Q8_STRIP * Q8_BLOCK);
        float32x4_t sw0 = vld1q_f32(sw), sw1 = vld1q_f32(sw + 4);
        float sx[MR];
        memcpy(sx, ab + MR * Q8_BLOCK, sizeof sx);
        f00 = q8_neon_scale(f00, s00, sx[0], sw0), f01 = q8_neon_scale(f01, s01, sx[0], sw1);
        f10 = q8_neon_scale(f10, s10, sx[1], sw0), f11 = q8_neon_scale(f11, s11, sx[1], sw1);
        f20 = q8_neon_scale(f20, s20, sx[2], sw0), f21 = q8_neon_scale(f21, s21, sx[2], sw1);
        f30 = q8_neon_scale(f30, s30, sx[3], sw0), f31 = q8_neon_scale(f31, s31, sx[3], sw1);
    }
    vst1q_f32(c, f00), vst1q_f32(c + 4, f01), vst1q_f32(c + ldc, f10), vst1q_f32(c + ldc + 4, f11);
    vst1q_f32(c + 2 * ldc, f20), vst1q_f32(c + 2 * ldc + 4, f21);
    vst1q_f32(c + 3 * ldc, f30), vst1q_f32(c + 3 * ldc + 4, f31);
}
/* all rows' 16 int32 accumulators at once in the 32 vector registers */
#define Q8_MULL_ROW_COUNT 4
#define Q8_MULL_ROWS(X) X(0) X(1) X(2) X(3)
#else
/* armv7's 16 q registers: two rows' 8 accumulators, B and an x quad */
#define Q8_MULL_ROW_COUNT 2
#define Q8_MULL_ROWS(X) X(0) X(1)
#endif

/* The 4×8 float tile of the NEON kernels: loaded (or zero), stored. */
static inline void q8_neon_tile_load(float32x4_t f[Q8_NEON_MR][2], const float *c, int64_t ldc, bool accumulate) {
    for (int r = 0; r < Q8_NEON_MR; r++) {
        f[r][0] = accumulate ? vld1q_f32(c + r * ldc) : vdupq_n_f32(0.0f);
        f[r][1] = accumulate ? vld1q_f32(c + r * ldc + 4) : vdupq_n_f32(0.0f);
    }
}

static inline void q8_neon_tile_store(float32x4_t f[Q8_NEON_MR][2], float *c, int64_t ldc) {
    for (int r = 0; r < Q8_NEON_MR; r++) {
        vst1q_f32(c + r * ldc, f[r][0]);
        vst1q_f32(c + r * ldc + 4, f[r][1]);
    }
}

/* q4: columns j0..j0+7 of nibble quad k4 (low nibbles for even k4, high for odd) as signed q (nibble − 8). */
static inline void q4_neon_quad_weights(const uint8_t *bb, int k4, int j0, int8x16_t *b0, int8x16_t *b1) {
    const uint8x16_t mask = vdupq_n_u8(15);
    const int8x16_t eight = vdupq_n_s8(8);
    const uint8_t *raw = bb + ((size_t)(k4 / 2) * Q8_STRIP + (size_t)j0) * 4;
    const uint8x16_t lo = vld1q_u8(raw), hi = vld1q_u8(raw + 16);
    *b0 = vsubq_s8(vreinterpretq_s8_u8(k4 % 2 ? vshrq_n_u8(lo, 4) : vandq_u8(lo, mask)), eight);
    *b1 = vsubq_s8(vreinterpretq_s8_u8(k4 % 2 ? vshrq_n_u8(hi, 4) : vandq_u8(hi, mask)), eight);
}

/* Columns j0..j0+7's float16 scales of a q4 strip block, widened (exactly). */
static inline void q4_neon_scales(const uint8_t *bb, int j0, float32x4_t *s0, float32x4_t *s1) {
    const uint16x8_t h = vld1q_u16((const uint16_t *)(const void *)(bb + Q4_NIBBLE_BYTES + (size_t)j0 * 2));
    *s0 = neon_f16_to_f32(vget_low_u16(h));
    *s1 = neon_f16_to_f32(vget_high_u16(h));
}

/* One block of the kernels without sdot, for q8 strips or (q4) nibble strips from column j0: per four k,
 * x's quad repeated across the register times four columns' quads with smull (int16 products,
 * |x·w| ≤ 127²), pairwise-accumulated into int32 (sadalp); at the block's end one pairwise add gives each
 * column's sum. Rows go Q8_MULL_ROWS at a time, their accumulators named (GCC keeps an array of them in
 * memory on armv7); the integer sums are exact, so the grouping changes no result. Always inlined, so
 * that each kernel gets its own copy with q4 constant. */
static inline __attribute__((always_inline)) void q8_neon_mull_block(float32x4_t f[Q8_NEON_MR][2], const uint8_t *ab,
                                                                     const uint8_t *bb, bool q4, int j0) {
    enum { MR = Q8_NEON_MR };
    float32x4_t sw0, sw1;
    if (q4) {
        q4_neon_scales(bb, j0, &sw0, &sw1);
    } else {
        const float *sw = (const float *)(const void *)(bb + Q8_STRIP * Q8_BLOCK);
        sw0 = vld1q_f32(sw), sw1 = vld1q_f32(sw + 4);
    }
    float sx[MR];
    memcpy(sx, ab + MR * Q8_BLOCK, sizeof sx);
#define Q8_MULL_DECLARE(r) int32x4_t p##r##0 = vdupq_n_s32(0), p##r##1 = p##r##0, p##r##2 = p##r##0, p##r##3 = p##r##0;
#define Q8_MULL_STEP(r)                                                                      \
    {                                                                                        \
        int32_t quad;                                                                        \
        memcpy(&quad, ab + (k4 * MR + r0 + (r)) * 4, 4);                                     \
        int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(quad));                              \
        p##r##0 = vpadalq_s16(p##r##0, vmull_s8(vget_low_s8(b0), vget_low_s8(xv)));          \
        p##r##1 = vpadalq_s16(p##r##1, neon_mull_high_s8(b0, xv));                           \
        p##r##2 = vpadalq_s16(p##r##2, vmull_s8(vget_low_s8(b1), vget_low_s8(xv)));          \
        p##r##3 = vpadalq_s16(p##r##3, neon_mull_high_s8(b1, xv));                           \
    }
#define Q8_MULL_SCALE(r)                                                                                        \
    f[r0 + (r)][0] = q8_neon_scale(f[r0 + (r)][0], neon_padd_s32(p##r##0, p##r##1), sx[r0 + (r)], sw0);          \
    f[r0 + (r)][1] = q8_neon_scale(f[r0 + (r)][1], neon_padd_s32(p##r##2, p##r##3), sx[r0 + (r)], sw1);
    for (int r0 = 0; r0 < MR; r0 += Q8_MULL_ROW_COUNT) {
        Q8_MULL_ROWS(Q8_MULL_DECLARE)
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            int8x16_t b0, b1;
            if (q4) {
                q4_neon_quad_weights(bb, k4, j0, &b0, &b1);
            } else {
                b0 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4), b1 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4 + 16);
            }
            Q8_MULL_ROWS(Q8_MULL_STEP)
        }
        Q8_MULL_ROWS(Q8_MULL_SCALE)
    }
#undef Q8_MULL_DECLARE
#undef Q8_MULL_STEP
#undef Q8_MULL_SCALE
}

/* q8 without sdot. */
static void q8_micro_neon_mull(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                               int64_t ldc, bool accumulate) {
    (void)b_hi;
    float32x4_t f[Q8_NEON_MR][2];
    q8_neon_tile_load(f, c, ldc, accumulate);
    for (int64_t blk = 0; blk < blocks; blk++)
        q8_neon_mull_block(f, a + blk * Q8_ROWS_BLOCK_BYTES(Q8_NEON_MR), b + blk * Q8_STRIP_BLOCK_BYTES, false, 0);
    q8_neon_tile_store(f, c, ldc);
}

/* Row r's 32 quants (int8 in k order) into the group's [k4][mr][4] layout, the block's scale and its
 * compensation. */
static inline void q8_store_quads_neon(uint8_t *block, int mr, int r, int8x16_t lo, int8x16_t hi, float scale) {
    uint32_t quads[Q8_BLOCK / 4];
    vst1q_s8((int8_t *)(void *)quads, lo);
    vst1q_s8((int8_t *)(void *)(quads + 4), hi);
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) memcpy(block + ((size_t)k4 * mr + r) * 4, &quads[k4], 4);
    q8_store_row_scale(block, mr, r, neon_addlv_s8(lo) + neon_addlv_s8(hi), scale);
}

/* The bit mask (bit k: element k) of eight lane masks of four elements each. */
static inline uint32_t q8_mask_bits_neon(const uint32x4_t m[8]) {
    static const uint32_t weights[4] = {1, 2, 4, 8};
    const uint32x4_t w = vld1q_u32(weights);
    uint32_t bits = 0;
    for (int i = 0; i < 8; i++) bits |= neon_addv_u32(vandq_u32(m[i], w)) << (4 * i);
    return bits;
}

/* NEON quantizer: the arithmetic and the outlier rule of q8_quantize_block (max, min, counts, 127/amax,
 * one multiply, round to nearest even); non-finite and tiny blocks go through the definition itself. */
static void q8_pack_rows_neon(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                              q8_outlier *outliers, int *n_outliers) {
    static const int8_t zeros[Q8_BLOCK];
    const float32x4_t big = vdupq_n_f32(Q8_FLT_MAX), inf = vdupq_n_f32(INFINITY);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_row_block(block, mr, r, zeros, 0.0f);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            float32x4_t v[8], a[8];
            uint32x4_t finite = vdupq_n_u32(~0u);
            float32x4_t vmax = vdupq_n_f32(0.0f);
            for (int i = 0; i < 8; i++) {
                v[i] = vld1q_f32(xb + 4 * i);
                a[i] = vabsq_f32(v[i]);
                finite = vandq_u32(finite, vcleq_f32(a[i], big)); /* false for NaN too */
                vmax = vmaxq_f32(vmax, a[i]);
            }
            float amax = neon_maxv_f32(vmax);
            if (neon_minv_u32(finite) == 0 || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            const float32x4_t quarter = vdupq_n_f32(amax * 0.25f);
            uint32x4_t large[8];
            int32x4_t count = vdupq_n_s32(0);
            for (int i = 0; i < 8; i++) {
                large[i] = vcgtq_f32(a[i], quarter);
                count = vsubq_s32(count, vreinterpretq_s32_u32(large[i])); /* lanes are 0 or −1 */
            }
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (neon_addv_s32(count) <= Q8_OUTLIERS_MAX) {
                float32x4_t rest = vdupq_n_f32(0.0f), low = inf;
                for (int i = 0; i < 8; i++) {
                    rest = vmaxq_f32(rest, vbslq_f32(large[i], vdupq_n_f32(0.0f), a[i]));
                    low = vminq_f32(low, vbslq_f32(large[i], a[i], inf));
                }
                float rest_max = neon_maxv_f32(rest);
                if (q8_outliers_apart(neon_minv_f32(low), rest_max)) {
                    outlier_mask = q8_mask_bits_neon(large);
                    qmax = rest_max;
                    for (int i = 0; i < 8; i++) v[i] = vbslq_f32(large[i], vdupq_n_f32(0.0f), v[i]);
                }
            }
            q8_add_outliers(outliers, n_outliers, r, b, xb, outlier_mask);
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_row_block(block, mr, r, zeros, 0.0f);
                continue;
            }
            const float32x4_t inv = vdupq_n_f32(127.0f / qmax);
            int16x8_t h[4];
            for (int i = 0; i < 4; i++) /* |x·inv| ≤ 127.00002: the narrowing never saturates */
                h[i] = vcombine_s16(vqmovn_s32(neon_round_s32(vmulq_f32(v[2 * i], inv))),
                                    vqmovn_s32(neon_round_s32(vmulq_f32(v[2 * i + 1], inv))));
            q8_store_quads_neon(block, mr, r, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])),
                                vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])), qmax / 127.0f);
        }
    }
}

/* q8_strip_outliers_fn: per outlier, byte k % 4 of each column's quad sign-extended by two shifts, then
 * the definition's two products and sum, four columns at once (a last part under four through the
 * definition). */
static void q8_strip_outliers_neon(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                   const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~3;
    const int32x4_t down = vdupq_n_s32(-24);
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES, quad = (size_t)(out->k / 4) * Q8_STRIP * 4;
        const int32x4_t up = vdupq_n_s32(24 - 8 * (out->k % 4));
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 4) {
            const uint8_t *column = q8_strip_column(b + block, b_hi + block, j);
            int32x4_t q = vreinterpretq_s32_u8(vld1q_u8(column + quad));
            float32x4_t w = vcvtq_f32_s32(vshlq_s32(vshlq_s32(q, up), down));
            float32x4_t term = vmulq_n_f32(vmulq_f32(w, vld1q_f32((const float *)(const void *)(column + Q8_STRIP * Q8_BLOCK))), out->value);
            vst1q_f32(row + j, vaddq_f32(vld1q_f32(row + j), term));
        }
        for (int j = whole; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

/* q4_strip_outliers_fn as q4_strip_outliers_avx2: per eight columns the 32-bit lanes of nibble bytes
 * shifted to the outlier's nibble, q − 8 converted, times the widened scales, then the definition's
 * multiply and add (separate instructions, no fusing). */
static void q4_strip_outliers_neon(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int j0, int nj,
                                   const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~7;
    const uint32x4_t nibble = vdupq_n_u32(15);
    const int32x4_t eight = vdupq_n_s32(8);
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q4_STRIP_BLOCK_BYTES, row8 = (size_t)(out->k / 8) * Q8_STRIP * 4;
        const int32x4_t shift = vdupq_n_s32(-(8 * (out->k % 4) + (out->k % 8 < 4 ? 0 : 4))); /* negative: right */
        const float32x4_t value = vdupq_n_f32(out->value);
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 8) {
            const int col = j0 + j; /* j0 is 0 or 8: eight columns never straddle the strips */
            const uint8_t *bb = (col < Q8_STRIP ? b : b_hi) + block;
            const int at = col % Q8_STRIP;
            float32x4_t scale[2];
            q4_neon_scales(bb, at, &scale[0], &scale[1]);
            for (int h = 0; h < 2; h++) {
                const uint32x4_t v = vld1q_u32((const uint32_t *)(const void *)(bb + row8 + (size_t)(at + 4 * h) * 4));
                const int32x4_t q = vsubq_s32(vreinterpretq_s32_u32(vandq_u32(vshlq_u32(v, shift), nibble)), eight);
                const float32x4_t term = vmulq_f32(value, vmulq_f32(vcvtq_f32_s32(q), scale[h]));
                vst1q_f32(row + j + 4 * h, vaddq_f32(vld1q_f32(row + j + 4 * h), term));
            }
        }
        if (whole < nj) q4_strip_outliers(c + whole, ldc, b, b_hi, j0 + whole, nj - whole, out, 1);
    }
}

/* q4 without sdot: q8_micro_neon_mull with the weights widened from nibbles. */
static void q4_micro_neon_mull(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, int j0, float *c,
                               int64_t ldc, bool accumulate) {
    (void)b_hi;
    float32x4_t f[Q8_NEON_MR][2];
    q8_neon_tile_load(f, c, ldc, accumulate);
    for (int64_t blk = 0; blk < blocks; blk++)
        q8_neon_mull_block(f, a + blk * Q8_ROWS_BLOCK_BYTES(Q8_NEON_MR), b + blk * Q4_STRIP_BLOCK_BYTES, true, j0);
    q8_neon_tile_store(f, c, ldc);
}

#if defined(__aarch64__)
/* q4 with sdot: q8_micro_neon_dot with the weights widened from nibbles. */
static Q8_DOTPROD_TARGET void q4_micro_neon_dot(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi,
                                                int j0, float *c, int64_t ldc, bool accumulate) {
    enum { MR = Q8_NEON_MR, NR = Q8_NEON_NR };
    (void)b_hi;
    float32x4_t f[MR][2];
    q8_neon_tile_load(f, c, ldc, accumulate);
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q4_STRIP_BLOCK_BYTES;
        int32x4_t s00 = vdupq_n_s32(0), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            int8x16_t b0, b1;
            q4_neon_quad_weights(bb, k4, j0, &b0, &b1);
            const int8x16_t av = vld1q_s8((const int8_t *)ab + k4 * MR * 4);
            Q8_SDOT_LANE(s00, b0, av, 0);
            Q8_SDOT_LANE(s01, b1, av, 0);
            Q8_SDOT_LANE(s10, b0, av, 1);
            Q8_SDOT_LANE(s11, b1, av, 1);
            Q8_SDOT_LANE(s20, b0, av, 2);
            Q8_SDOT_LANE(s21, b1, av, 2);
            Q8_SDOT_LANE(s30, b0, av, 3);
            Q8_SDOT_LANE(s31, b1, av, 3);
        }
        float32x4_t sw0, sw1;
        q4_neon_scales(bb, j0, &sw0, &sw1);
        float sx[MR];
        memcpy(sx, ab + MR * Q8_BLOCK, sizeof sx);
        f[0][0] = q8_neon_scale(f[0][0], s00, sx[0], sw0), f[0][1] = q8_neon_scale(f[0][1], s01, sx[0], sw1);
        f[1][0] = q8_neon_scale(f[1][0], s10, sx[1], sw0), f[1][1] = q8_neon_scale(f[1][1], s11, sx[1], sw1);
        f[2][0] = q8_neon_scale(f[2][0], s20, sx[2], sw0), f[2][1] = q8_neon_scale(f[2][1], s21, sx[2], sw1);
        f[3][0] = q8_neon_scale(f[3][0], s30, sx[3], sw0), f[3][1] = q8_neon_scale(f[3][1], s31, sx[3], sw1);
    }
    q8_neon_tile_store(f, c, ldc);
}

static const q8_kernels q8_kernels_neon_dot_table = {
    "neon-sdot", Q8_NEON_MR, Q8_NEON_NR, 128, q8_micro_neon_dot, q8_pack_rows_neon, q8_strip_outliers_neon,
    q4_micro_neon_dot, q4_strip_outliers_neon,
};
static const q8_kernels q8_kernels_neon_mull_table = {
    "neon-smull", Q8_NEON_MR, Q8_NEON_NR, 128, q8_micro_neon_mull, q8_pack_rows_neon, q8_strip_outliers_neon,
    q4_micro_neon_mull, q4_strip_outliers_neon,
};

static const q8_kernels *q8_kernels_neon(bool dotprod) {
    return dotprod ? &q8_kernels_neon_dot_table : &q8_kernels_neon_mull_table;
}
#else
static const q8_kernels q8_kernels_neon_mull_table = {
    "neon32-vmull", Q8_NEON_MR, Q8_NEON_NR, 128, q8_micro_neon_mull, q8_pack_rows_neon, q8_strip_outliers_neon,
    q4_micro_neon_mull, q4_strip_outliers_neon,
};

static const q8_kernels *q8_kernels_neon(bool dotprod) {
    (void)dotprod; /* no sdot before armv8.2 */
    return &q8_kernels_neon_mull_table;
}
#endif

#else
static const kernel_ops *kernel_ops_neon(void) { return NULL; }
static const q8_kernels *q8_kernels_neon(bool dotprod) { (void)dotprod; return NULL; }
#endif

/* ================================================================================================
 * 7d. Elementwise kernels: norms, activations, rotary embeddings
 *
 * Row-wise and elementwise operations between the matrix products, split over the pool; the
 * arithmetic is the kernel tables' (norm_sum, norm_apply, sigmoid_gate, rotate_half, scale_add).
 * ================================================================================================ */

/* ---- splitting rows or elements over the pool ---- */

/* fn(arg, begin, end) over [0, count) in chunks of at least `grain`, about four per thread. Every element
 * is computed the same way whatever the split, so results do not depend on the thread count. */
typedef void (*range_fn)(void *arg, int64_t begin, int64_t end);

typedef struct {
    range_fn fn;
    void *arg;
    int64_t count, chunk;
} range_job;

static void range_task(void *arg, int task, int thread) {
    (void)thread;
    const range_job *job = arg;
    int64_t begin = task * job->chunk;
    job->fn(job->arg, begin, MIN(job->count, begin + job->chunk));
}

static void parallel_for(thread_pool *pool, int64_t count, int64_t grain, range_fn fn, void *arg) {
    if (count <= 0) return;
    int64_t chunk = MAX(grain, ceil_div(count, 4 * (int64_t)thread_pool_size(pool)));
    range_job job = {fn, arg, count, chunk};
    thread_pool_run(pool, (int)ceil_div(count, chunk), range_task, &job);
}

/* ---- norms ---- */

typedef struct {
    const kernel_ops *ops;
    float *out;
    const float *x, *w, *b;
    int64_t dim;
    float eps;
} norm_job;

/* Qwen2 RMSNorm: x · rsqrt(mean(x²) + eps), then · w. */
static void rms_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * j->dim;
        double mean_sq = j->ops->norm_sum(xr, j->dim, 0.0, true) / (double)j->dim;
        float inv = (float)(1.0 / sqrt((double)(float)mean_sq + (double)j->eps));
        j->ops->norm_apply(j->out + r * j->dim, xr, j->dim, 0.0f, inv, j->w, NULL);
    }
}

/* LayerNorm: (x − mean) · rsqrt(var + eps) · w + b, biased variance. */
static void layer_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * j->dim;
        double mean = j->ops->norm_sum(xr, j->dim, 0.0, false) / (double)j->dim;
        double var = j->ops->norm_sum(xr, j->dim, mean, true) / (double)j->dim;
        float inv = (float)(1.0 / sqrt(var + (double)j->eps));
        j->ops->norm_apply(j->out + r * j->dim, xr, j->dim, (float)mean, inv, j->w, j->b);
    }
}

#define NORM_ROWS_GRAIN 16

/* out may be x (row by row in place). */
static void rms_norm(thread_pool *pool, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps) {
    norm_job job = {kernel_ops_for(pool), out, x, w, NULL, dim, eps};
    parallel_for(pool, n, NORM_ROWS_GRAIN, rms_norm_rows, &job);
}

static void layer_norm(thread_pool *pool, float *out, const float *x, const float *w, const float *b, int64_t n,
                       int64_t dim, float eps) {
    norm_job job = {kernel_ops_for(pool), out, x, w, b, dim, eps};
    parallel_for(pool, n, NORM_ROWS_GRAIN, layer_norm_rows, &job);
}

/* ---- elementwise pieces ---- */

#define ELEMENTWISE_GRAIN 16384

typedef struct {
    float *x;
    const float *y;
    const kernel_ops *ops;
    float alpha;
} elementwise_job;

/* x += y through scale_add(1, 1): no product rounds, so it is x + y exactly on every path. */
static void add_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    j->ops->scale_add(j->x + begin, 1.0f, j->y + begin, 1.0f, end - begin);
}

static void add_in_place(thread_pool *pool, float *x, const float *y, size_t count) {
    elementwise_job job = {x, y, kernel_ops_for(pool), 0.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, add_range, &job);
}

static void sigmoid_gate_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    j->ops->sigmoid_gate(j->x + begin, j->y ? j->y + begin : NULL, end - begin, j->alpha);
}

/* QuickGELU (the ViT MLPs): x·σ(1.702·x). */
static void quick_gelu_in_place(thread_pool *pool, float *x, size_t count) {
    elementwise_job job = {x, NULL, kernel_ops_for(pool), 1.702f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, sigmoid_gate_range, &job);
}

/* gate ← silu(gate) · up, silu(x) = x·σ(x). */
static void swiglu_in_place(thread_pool *pool, float *gate, const float *up, size_t count) {
    elementwise_job job = {gate, up, kernel_ops_for(pool), 1.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, sigmoid_gate_range, &job);
}

static void gelu_erf_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->x[i] = 0.5f * j->x[i] * (1.0f + erff(j->x[i] * (float)M_SQRT1_2));
}

/* Exact GELU (the merger and the Phi-3.5-V projection): x/2·(1 + erf(x/√2)). */
static void gelu_erf_in_place(thread_pool *pool, float *x, size_t count) {
    elementwise_job job = {x, NULL, NULL, 0.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, gelu_erf_range, &job);
}

/* ---- rotary embeddings (rotate-half layout) ---- */

/* inv_freq[j] = 1 / theta^(2j/dim) for j < dim/2, in float32 as torch computes it. */
static void rope_inverse_frequencies(double theta, int dim, float *inv_freq) {
    for (int j = 0; j < dim / 2; j++) {
        float exponent = (float)(2 * j) / (float)dim;
        inv_freq[j] = 1.0f / powf((float)theta, exponent);
    }
}

/* Rotates, in each of n rows (row stride `stride`), `n_heads` heads of head_dim floats (consecutive from
 * the row's start) by row r's angles, whose cos/sin are cos_t/sin_t + r·head_dim/2 (dims i and
 * i + head_dim/2 share angle i):
 *   out[i] = x[i]·cos − x[i+half]·sin,   out[i+half] = x[i+half]·cos + x[i]·sin.
 * Rows are split over the pool; each element is computed the same way on every path. */
typedef struct {
    const kernel_ops *ops;
    float *x;
    int64_t stride;
    int n_heads, head_dim;
    const float *cos_t, *sin_t;
} rope_job;

static void rope_range(void *arg, int64_t begin, int64_t end) {
    const rope_job *j = arg;
    const int64_t half = j->head_dim / 2;
    for (int64_t r = begin; r < end; r++)
        for (int h = 0; h < j->n_heads; h++)
            j->ops->rotate_half(j->x + r * j->stride + (int64_t)h * j->head_dim, j->cos_t + r * half,
                                j->sin_t + r * half, half);
}

#define ROPE_ROWS_GRAIN 16

static void rope_rows(thread_pool *pool, float *x, int64_t n, int64_t stride, int n_heads, int head_dim,
                      const float *cos_t, const float *sin_t) {
    rope_job job = {kernel_ops_for(pool), x, stride, n_heads, head_dim, cos_t, sin_t};
    parallel_for(pool, n, ROPE_ROWS_GRAIN, rope_range, &job);
}

/* ================================================================================================
 * 7e. Shared layers: the sizes a forward pass carves from its workspace (section 1) and the linear
 * layer with the optional unmerged LoRA of the ABC query adapter, used by every encoder and decoder
 * ================================================================================================ */

/* rows·cols with overflow folded into SIZE_MAX, which workspace_carve then refuses. */
static size_t floats_for(int64_t rows, int64_t cols) {
    size_t n;
    if (rows < 0 || cols < 0 || !mul_size((size_t)rows, (size_t)cols, &n)) return SIZE_MAX;
    return n;
}

/* ---- linear layers ---- */

/* Run-time LoRA adapters kept apart from the weights: slot 0 is ABC's query adapter, slots 1.. the
 * named task adapters (jina-v4's retrieval, text-matching, code). A call picks at most one. */
#define MODEL_MAX_ADAPTERS 8
#define ADAPTER_NONE (-1)
#define ADAPTER_QUERY 0

typedef struct {
    const float *a; /* [rank][in] f32, or NULL when this adapter does not touch the layer */
    const float *b; /* [out][rank] f32 */
    int rank;
} lora_factors;

/* y = W·x + b, and with an adapter on y += B·(A·x), the LoRA scale already folded into B by the
 * converter. */
typedef struct {
    const tensor *weight; /* [out][in], any stored dtype */
    const tensor *bias;   /* [out] f32, or NULL */
    lora_factors lora[MODEL_MAX_ADAPTERS];
    int64_t in, out;
} linear_layer;

/* Room for the adapter path of one linear layer: rows·max_rank and rows·max_out floats, and the slot
 * in use. NULL (or NULL members) means the adapter is off. */
typedef struct {
    float *low_rank; /* A·x */
    float *delta;    /* B·(A·x) */
    int slot;
} adapter_scratch;

static void linear_forward(thread_pool *pool, const linear_layer *l, const float *x, int64_t n,
                           float *y, const adapter_scratch *adapter) {
    matmul(pool, y, x, n, l->weight, l->bias);
    if (!adapter || !adapter->low_rank) return;
    const lora_factors *f = &l->lora[adapter->slot];
    if (!f->a) return;
    matmul_f32(pool, adapter->low_rank, x, n, f->a, f->rank, l->in, NULL);
    matmul_f32(pool, adapter->delta, adapter->low_rank, n, f->b, l->out, f->rank, NULL);
    size_t count = (size_t)n * (size_t)l->out;
    for (size_t i = 0; i < count; i++) y[i] += adapter->delta[i];
}

/* ================================================================================================
 * 8. Vision encoder: the Qwen2-VL ViT and its 2×2 patch merger (docs/model.md#vision-tower)
 * ================================================================================================ */

#define VISION_MAX_DEPTH 1024

typedef struct {
    int depth, embed_dim, n_heads, head_dim, mlp_dim;
    int patch_dim;  /* in_channels · temporal_patch · patch² (1176) */
    int merge_size; /* 2: each merged token is a 2×2 group of patches */
    int out_dim;    /* the language model's width */
    float norm_eps;
    double rope_theta;
    /* Qwen2.5-VL (vision25_* below): RMSNorm instead of LayerNorm (blocks and ln_q), the gated SiLU
     * MLP (fc1 = gate, up, fc2 = down), attention within windows of window_merged² merged groups
     * except in the blocks marked in full_attention. */
    bool qwen25;
    int window_merged;
    bool full_attention[VISION_MAX_DEPTH];
} vision_config;

typedef struct {
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    linear_layer qkv, proj, fc1, fc2;
    linear_layer up; /* Qwen2.5-VL's up_proj (fc1 is gate_proj, fc2 down_proj) */
} vision_block;

typedef struct {
    linear_layer patch_embed; /* [embed_dim][patch_dim], no bias */
    vision_block *blocks;     /* depth of them */
    const float *ln_q_w, *ln_q_b;
    linear_layer merger_fc1, merger_fc2; /* merger.mlp.0 and merger.mlp.2 */
    int adapter_rank, adapter_width;     /* largest query-adapter rank and output (0: none) */
} vision_weights;

/* The (row, column) in the patch grid of each patch of one frame, in the order of docs/image-pipeline.md#patches
 * (2×2 groups row-major, then row and column inside the group). */
static void vision_patch_coordinates(int grid_w, int merge, int64_t k, int *row, int *col) {
    const int64_t group = k / ((int64_t)merge * merge), inside = k % ((int64_t)merge * merge);
    const int groups_per_row = grid_w / merge;
    *row = (int)(group / groups_per_row) * merge + (int)(inside / merge);
    *col = (int)(group % groups_per_row) * merge + (int)(inside % merge);
}

/* cos/sin [n][head_dim/2] of the 2-D rotary embedding: head_dim/4 row frequencies then head_dim/4
 * column frequencies, theta^(2j/(head_dim/2)). Frames repeat the same coordinates. Qwen2.5-VL computes
 * the same angles per patch and permutes them with the patches (order, see vision25_window_order). */
static void vision_rotary_tables(const vision_config *c, const int grid[3], const int64_t *order, float *cos_t,
                                 float *sin_t) {
    const int half = c->head_dim / 2, quarter = half / 2, group = c->merge_size * c->merge_size;
    float inv_freq[512]; /* head_dim ≤ 2048 is checked at load */
    rope_inverse_frequencies(c->rope_theta, half, inv_freq);
    const int64_t per_frame = (int64_t)grid[1] * grid[2];
    for (int64_t p = 0; p < per_frame * grid[0]; p++) {
        int row, col;
        /* in window order (order != NULL) row p is patch p % group of merged group order[p / group] */
        const int64_t src = order ? order[p / group] * group + p % group : p;
        vision_patch_coordinates(grid[2], c->merge_size, src % per_frame, &row, &col);
        float *cs = cos_t + p * half, *sn = sin_t + p * half;
        for (int j = 0; j < quarter; j++) {
            float a_row = (float)row * inv_freq[j], a_col = (float)col * inv_freq[j];
            cs[j] = cosf(a_row);
            sn[j] = sinf(a_row);
            cs[quarter + j] = cosf(a_col);
            sn[quarter + j] = sinf(a_col);
        }
    }
}

/* One pre-norm ViT block on x [n][E]: x += proj(attention(rope(qkv(LN1 x)))), x += fc2(qgelu(fc1(LN2 x))).
 * Attention is full (bidirectional) within each segment [bounds[i], bounds[i+1]) of the rows: the frames,
 * or Qwen2.5-VL's windows. Qwen2.5-VL: RMSNorm, and x += down(silu(gate(h))·up(h)). */
typedef struct {
    float *x, *h, *qkv, *att, *mlp, *mlp_up, *cos_t, *sin_t;
    adapter_scratch adapter;
} vision_state;

static void vision_norm(thread_pool *pool, const vision_config *c, float *out, const float *x, const float *w,
                        const float *b, int64_t n) {
    if (c->qwen25) rms_norm(pool, out, x, w, n, c->embed_dim, c->norm_eps);
    else layer_norm(pool, out, x, w, b, n, c->embed_dim, c->norm_eps);
}

static void vision_block_forward(thread_pool *pool, const vision_config *c, const vision_block *b,
                                 vision_state *s, int64_t n, const int64_t *bounds, int64_t n_segments,
                                 const adapter_scratch *adapter) {
    const int E = c->embed_dim, hd = c->head_dim;

    vision_norm(pool, c, s->h, s->x, b->norm1_w, b->norm1_b, n);
    linear_forward(pool, &b->qkv, s->h, n, s->qkv, adapter);
    /* each row is [q | k | v], each [heads][head_dim] */
    rope_rows(pool, s->qkv, n, 3 * (int64_t)E, c->n_heads, hd, s->cos_t, s->sin_t);
    rope_rows(pool, s->qkv + E, n, 3 * (int64_t)E, c->n_heads, hd, s->cos_t, s->sin_t);
    for (int64_t t = 0; t < n_segments; t++) {
        const float *q = s->qkv + (size_t)bounds[t] * 3 * E;
        attention(pool, s->att + (size_t)bounds[t] * E, q, q + E, q + 2 * E, bounds[t + 1] - bounds[t], c->n_heads,
                  c->n_heads, hd, 3 * (int64_t)E, 3 * (int64_t)E, false);
    }
    linear_forward(pool, &b->proj, s->att, n, s->h, adapter);
    add_in_place(pool, s->x, s->h, (size_t)n * E);

    vision_norm(pool, c, s->h, s->x, b->norm2_w, b->norm2_b, n);
    linear_forward(pool, &b->fc1, s->h, n, s->mlp, adapter);
    if (c->qwen25) {
        linear_forward(pool, &b->up, s->h, n, s->mlp_up, adapter);
        swiglu_in_place(pool, s->mlp, s->mlp_up, (size_t)n * c->mlp_dim);
    } else {
        quick_gelu_in_place(pool, s->mlp, (size_t)n * c->mlp_dim);
    }
    linear_forward(pool, &b->fc2, s->mlp, n, s->h, adapter);
    add_in_place(pool, s->x, s->h, (size_t)n * E);
}

/* Qwen2.5-VL's window order: per frame, windows of win×win merged groups row-major over the merged grid
 * (those on the right and bottom edges cut short), the groups row-major inside each window; order[j] is
 * the merged group (row-major per frame, as the patches come) at position j. bounds gets the windows'
 * first rows in patches and the total at the end; returns the number of windows. */
static int64_t vision25_window_order(const int grid[3], int merge, int win, int64_t *order, int64_t *bounds) {
    const int lh = grid[1] / merge, lw = grid[2] / merge, group = merge * merge;
    int64_t j = 0, n_windows = 0;
    bounds[0] = 0;
    for (int t = 0; t < grid[0]; t++)
        for (int wr = 0; wr < lh; wr += win)
            for (int wc = 0; wc < lw; wc += win) {
                for (int r = wr; r < MIN(wr + win, lh); r++)
                    for (int col = wc; col < MIN(wc + win, lw); col++)
                        order[j++] = ((int64_t)t * lh + r) * lw + col;
                bounds[++n_windows] = j * group;
            }
    return n_windows;
}

/* Rows of `width` floats in groups of `rows` rows: dst group j = src group order[j] (inverse: dst group
 * order[j] = src group j). */
static void vision25_permute(float *dst, const float *src, const int64_t *order, int64_t n_groups, int64_t rows,
                             int64_t width, bool inverse) {
    const size_t len = (size_t)(rows * width);
    for (int64_t j = 0; j < n_groups; j++) {
        const int64_t d = inverse ? order[j] : j, s_ = inverse ? j : order[j];
        memcpy(dst + (size_t)d * len, src + (size_t)s_ * len, len * sizeof(float));
    }
}

/* pixels [n][patch_dim] in the patch order of docs/image-pipeline.md#patches → out [n/merge²][out_dim], the embeddings that
 * replace the image tokens. The caller has checked the grid (t·h·w = n, h and w multiples of merge). */
static abc_status vision_forward(thread_pool *pool, const vision_config *c, const vision_weights *w,
                                 const float *pixels, const int grid[3], int adapter_slot, workspace *ws,
                                 float *out, abc_error *err) {
    const int64_t n = (int64_t)grid[0] * grid[1] * grid[2], per_frame = (int64_t)grid[1] * grid[2];
    const int E = c->embed_dim, group = c->merge_size * c->merge_size;
    const int64_t n_merged = n / group;
    const bool use_adapter = adapter_slot != ADAPTER_NONE && w->adapter_rank > 0, windows = c->window_merged > 0;
    vision_state s;
    float *merged = NULL;
    const size_t sizes[] = {floats_for(n, E),          floats_for(n, E),
                            floats_for(n, 3 * (int64_t)E), floats_for(n, E),
                            floats_for(n, c->mlp_dim),  c->qwen25 ? floats_for(n, c->mlp_dim) : 0,
                            floats_for(n, c->head_dim / 2), floats_for(n, c->head_dim / 2),
                            use_adapter ? floats_for(n, w->adapter_rank) : 0,
                            use_adapter ? floats_for(n, w->adapter_width) : 0,
                            windows ? floats_for(n_merged, c->out_dim) : 0};
    float **arrays[] = {&s.x, &s.h, &s.qkv, &s.att, &s.mlp, &s.mlp_up, &s.cos_t, &s.sin_t, &s.adapter.low_rank,
                        &s.adapter.delta, &merged};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the vision tower (%lld patches)", (long long)n);
    if (!use_adapter) s.adapter.low_rank = s.adapter.delta = NULL;
    s.adapter.slot = adapter_slot;
    const adapter_scratch *adapter = use_adapter ? &s.adapter : NULL;
    /* attention segments: the frames, and with windows the windows (rows in window order) */
    int64_t *frames = xmalloc(((size_t)grid[0] + 1) * sizeof *frames), *order = NULL, *wbounds = NULL, n_windows = 0;
    if (windows) {
        order = xmalloc((size_t)n_merged * sizeof *order);
        wbounds = xmalloc(((size_t)n_merged + 1) * sizeof *wbounds);
    }
    if (!frames || (windows && (!order || !wbounds))) {
        free(frames);
        free(order);
        free(wbounds);
        return fail(err, ABC_ERR_NOMEM, "out of memory for the vision tower (%lld patches)", (long long)n);
    }
    for (int t = 0; t <= grid[0]; t++) frames[t] = t * per_frame;

    linear_forward(pool, &w->patch_embed, pixels, n, s.x, adapter);
    if (windows) {
        n_windows = vision25_window_order(grid, c->merge_size, c->window_merged, order, wbounds);
        vision25_permute(s.h, s.x, order, n_merged, group, E, false);
        float *t = s.x;
        s.x = s.h;
        s.h = t;
    }
    vision_rotary_tables(c, grid, order, s.cos_t, s.sin_t);
    for (int i = 0; i < c->depth; i++) {
        const bool full = !windows || c->full_attention[i];
        vision_block_forward(pool, c, &w->blocks[i], &s, n, full ? frames : wbounds, full ? grid[0] : n_windows,
                             adapter);
    }

    /* Merger: the norm per patch; the `group` consecutive patches of a 2×2 group, side by side, are
     * one row of [n_merged][group·E] — the same memory, so no copy. Windows: back to the patches' order. */
    vision_norm(pool, c, s.h, s.x, w->ln_q_w, w->ln_q_b, n);
    linear_forward(pool, &w->merger_fc1, s.h, n_merged, s.att, adapter);
    gelu_erf_in_place(pool, s.att, (size_t)n_merged * group * E);
    linear_forward(pool, &w->merger_fc2, s.att, n_merged, windows ? merged : out, adapter);
    if (windows) vision25_permute(out, merged, order, n_merged, 1, c->out_dim, true);
    free(frames);
    free(order);
    free(wbounds);
    return ABC_OK;
}

/* ================================================================================================
 * 8b. Vision encoder for Phi-3.5-V: the CLIP ViT, the HD token layout and the projection (docs/model.md#phi-35-v)
 *
 * Each 336×336 slot (slot 0 the global view, then the crops row-major) goes through CLIP: patch
 * embedding + class token + learned positions, pre-LayerNorm, pre-norm encoder layers with quick-GELU;
 * the features are the output of the second-to-last layer (the converter stores only the layers that
 * run), class token dropped. 2×2 patch groups are concatenated into 4·C-wide tokens, laid out as the
 * crops stitched into one grid whose rows each end with sub_GN, then glb_GN, then the global view's
 * rows each ending with sub_GN; Linear–GELU(erf)–Linear projects every token to the decoder's width.
 * ================================================================================================ */

typedef struct {
    int hidden, intermediate, n_heads, head_dim, n_layers;
    int image_size, patch_size;
    int grid;        /* patches per side of a slot: image_size / patch_size (24) */
    int patch_dim;   /* 3 · patch_size² (588), the conv kernel flattened (channel, ky, kx) */
    int out_dim;     /* the decoder's width */
    float norm_eps;
} clip_config;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    linear_layer q, k, v, out, fc1, fc2;
} clip_layer;

typedef struct {
    linear_layer patch_embed;           /* [C][patch_dim], no bias */
    const float *class_embedding;       /* [C] */
    const tensor *position_embedding;   /* [grid² + 1][C], any weight dtype */
    const float *pre_ln_w, *pre_ln_b;
    clip_layer *layers;                 /* n_layers of them */
    const float *glb_gn, *sub_gn;       /* [4C] separators */
    linear_layer proj0, proj2;          /* img_projection.0 [H][4C] and .2 [H][H] */
} clip_weights;

/* Tokens one image takes with an h_crop × w_crop crop grid: every view is (grid/2)² merged tokens, the
 * stitched crop grid has h_crop·grid/2 rows ending in sub_GN, the global view grid/2 rows; + glb_GN. */
static int64_t hd_image_token_count(const clip_config *c, int h_crop, int w_crop) {
    const int64_t side = c->grid / 2;
    return ((int64_t)h_crop * w_crop + 1) * side * side + 1 + ((int64_t)h_crop + 1) * side;
}

/* One slot [3][S][S] → patches [grid²][3·p·p], patches row-major, each in (channel, ky, kx) order. */
static void clip_extract_patches(const clip_config *c, const float *slot, float *patches) {
    const int S = c->image_size, p = c->patch_size, g = c->grid;
    for (int py = 0; py < g; py++)
        for (int px = 0; px < g; px++) {
            float *dst = patches + ((size_t)py * g + px) * c->patch_dim;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = slot + ((size_t)ch * S + (size_t)py * p + ky) * S + (size_t)px * p;
                    memcpy(dst, src, (size_t)p * sizeof *dst);
                    dst += p;
                }
        }
}

typedef struct {
    float *x, *h, *q, *k, *v, *att, *mlp;
} clip_state;

/* One pre-norm encoder layer on x [n_slots·T][C] (T = grid² + 1 tokens per slot, attention within a slot):
 *   x += out(attention(q(n), k(n), v(n))), n = LN1(x);   x += fc2(quick_gelu(fc1(LN2(x)))). */
static void clip_layer_forward(thread_pool *pool, const clip_config *c, const clip_layer *l, clip_state *s,
                               int n_slots) {
    const int64_t T = (int64_t)c->grid * c->grid + 1, n = T * n_slots;
    const int C = c->hidden;
    layer_norm(pool, s->h, s->x, l->ln1_w, l->ln1_b, n, C, c->norm_eps);
    linear_forward(pool, &l->q, s->h, n, s->q, NULL);
    linear_forward(pool, &l->k, s->h, n, s->k, NULL);
    linear_forward(pool, &l->v, s->h, n, s->v, NULL);
    for (int slot = 0; slot < n_slots; slot++) {
        const size_t at = (size_t)slot * T * C;
        attention(pool, s->att + at, s->q + at, s->k + at, s->v + at, T, c->n_heads, c->n_heads, c->head_dim, C, C,
                  false);
    }
    linear_forward(pool, &l->out, s->att, n, s->h, NULL);
    add_in_place(pool, s->x, s->h, (size_t)n * C);

    layer_norm(pool, s->h, s->x, l->ln2_w, l->ln2_b, n, C, c->norm_eps);
    linear_forward(pool, &l->fc1, s->h, n, s->mlp, NULL);
    quick_gelu_in_place(pool, s->mlp, (size_t)n * c->intermediate);
    linear_forward(pool, &l->fc2, s->mlp, n, s->h, NULL);
    add_in_place(pool, s->x, s->h, (size_t)n * C);
}

/* pixels [n_slots][3][S][S] → features [n_slots][grid²][C]: the patch features of every slot. */
static abc_status clip_forward(thread_pool *pool, const clip_config *c, const clip_weights *w, const float *pixels,
                               int n_slots, workspace *ws, float *features, abc_error *err) {
    const int64_t P = (int64_t)c->grid * c->grid, T = P + 1, n = T * n_slots;
    const int C = c->hidden;
    clip_state s;
    float *patches, *embedded;
    const size_t sizes[] = {floats_for(n, C), floats_for(n, C), floats_for(n, C), floats_for(n, C),
                            floats_for(n, C), floats_for(n, C), floats_for(n, c->intermediate),
                            floats_for(P * n_slots, c->patch_dim), floats_for(P * n_slots, C)};
    float **arrays[] = {&s.x, &s.h, &s.q, &s.k, &s.v, &s.att, &s.mlp, &patches, &embedded};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the CLIP encoder (%d image slots)", n_slots);

    const size_t slot_floats = (size_t)3 * c->image_size * c->image_size;
    for (int slot = 0; slot < n_slots; slot++)
        clip_extract_patches(c, pixels + slot * slot_floats, patches + (size_t)slot * P * c->patch_dim);
    linear_forward(pool, &w->patch_embed, patches, P * n_slots, embedded, NULL);
    float *position = s.h; /* one row at a time */
    for (int slot = 0; slot < n_slots; slot++) {
        float *x = s.x + (size_t)slot * T * C;
        for (int64_t t = 0; t < T; t++) {
            const float *token = t == 0 ? w->class_embedding : embedded + ((size_t)slot * P + (size_t)t - 1) * C;
            tensor_row_f32(w->position_embedding, t, position);
            for (int j = 0; j < C; j++) x[t * C + j] = token[j] + position[j];
        }
    }
    layer_norm(pool, s.x, s.x, w->pre_ln_w, w->pre_ln_b, n, C, c->norm_eps);
    for (int i = 0; i < c->n_layers; i++) clip_layer_forward(pool, c, &w->layers[i], &s, n_slots);
    for (int slot = 0; slot < n_slots; slot++) /* drop the class token */
        memcpy(features + (size_t)slot * P * C, s.x + ((size_t)slot * T + 1) * C, (size_t)P * C * sizeof *features);
    return ABC_OK;
}

/* The 4·C-wide token of the 2×2 patch group at merged (row, col) of one slot's features [grid²][C]:
 * patches (dy, dx) = (0,0), (0,1), (1,0), (1,1) side by side. */
static void hd_merged_token(const clip_config *c, const float *slot_features, int row, int col, float *out) {
    const int C = c->hidden;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            const int64_t patch = (int64_t)(2 * row + dy) * c->grid + 2 * col + dx;
            memcpy(out + (size_t)(2 * dy + dx) * C, slot_features + patch * C, (size_t)C * sizeof *out);
        }
}

/* features [1 + h·w][grid²][C] (slot 0 global) → tokens [hd_image_token_count][4C] in the layout above. */
static void hd_layout(const clip_config *c, const float *features, int h_crop, int w_crop, const float *sub_gn,
                      const float *glb_gn, float *tokens) {
    const int side = c->grid / 2;
    const size_t width = (size_t)4 * c->hidden, slot_floats = (size_t)c->grid * c->grid * c->hidden;
    float *out = tokens;
    for (int row = 0; row < h_crop * side; row++) {
        for (int col = 0; col < w_crop * side; col++, out += width) {
            const int crop = (row / side) * w_crop + col / side;
            hd_merged_token(c, features + (size_t)(1 + crop) * slot_floats, row % side, col % side, out);
        }
        memcpy(out, sub_gn, width * sizeof *out);
        out += width;
    }
    memcpy(out, glb_gn, width * sizeof *out);
    out += width;
    for (int row = 0; row < side; row++) {
        for (int col = 0; col < side; col++, out += width) hd_merged_token(c, features, row, col, out);
        memcpy(out, sub_gn, width * sizeof *out);
        out += width;
    }
}

/* CLIP features of the 1 + h·w slots → image features [hd_image_token_count][out_dim]. */
static abc_status hd_project(thread_pool *pool, const clip_config *c, const clip_weights *w, const float *features,
                             int h_crop, int w_crop, workspace *ws, float *image_features, abc_error *err) {
    const int64_t n = hd_image_token_count(c, h_crop, w_crop);
    float *tokens, *inner;
    const size_t sizes[] = {floats_for(n, 4 * (int64_t)c->hidden), floats_for(n, c->out_dim)};
    float **arrays[] = {&tokens, &inner};
    if (!workspace_carve(ws, 2, sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the image projection (%lld tokens)", (long long)n);
    hd_layout(c, features, h_crop, w_crop, w->sub_gn, w->glb_gn, tokens);
    linear_forward(pool, &w->proj0, tokens, n, inner, NULL);
    gelu_erf_in_place(pool, inner, (size_t)n * c->out_dim);
    linear_forward(pool, &w->proj2, inner, n, image_features, NULL);
    return ABC_OK;
}

/* ================================================================================================
 * 9. Language model: multimodal position ids and the Qwen2 decoder (docs/model.md#decoder)
 * ================================================================================================ */

typedef struct {
    int hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim;
    int64_t vocab;
    float rms_eps;
    double rope_theta;
    int mrope_section[3]; /* rotary frequencies per position component (t, h, w); sum = head_dim/2 */
    bool causal;          /* vlm2vec: causal; abc: bidirectional */
    int mrope_rule;        /* which image runs get 3-D ids: MROPE_VISION_START, _TOKEN_TYPE or _SEQUENTIAL */
    int32_t image_token, vision_start_token;
    int32_t vision_end_token; /* qwen2_vl (mean_vision_span pooling ends there); -1 when the model has none */
    int32_t video_token;   /* <|video_pad|>, a visual token like image_token; -1 when the model has none */
    int merge_size;        /* the vision tower's: merged grid = patch grid / merge_size */
    /* Phi-3 "su" (longrope) scaling: inv_freq[j] / factor[j] with the short factors while the sequence
     * fits original_max_positions, the long ones beyond; cos/sin scaled by attention_factor. NULL
     * factors: plain RoPE (Qwen2-VL, whose mrope_section then spreads the frequencies over t, h, w). */
    const float *rope_short_factor, *rope_long_factor; /* head_dim/2 each */
    int64_t rope_original_max_positions, rope_max_positions;
} text_config;

typedef struct {
    const float *input_norm, *post_attn_norm;
    linear_layer q, k, v, o, gate, up, down;
} text_layer;

typedef struct {
    const tensor *embed_tokens; /* [vocab][hidden] */
    text_layer *layers;         /* n_layers of them */
    const float *final_norm;
    int adapter_rank, adapter_width; /* largest query-adapter rank and output (0: none) */
} text_weights;

/* ---- multimodal RoPE position ids ---- */

/* Image and video tokens both take rows of the vision tower's output (an input has one or the other). */
static bool is_visual_token(const text_config *c, int32_t id) {
    return id == c->image_token || (c->video_token >= 0 && id == c->video_token);
}

/* Number of image tokens one image occupies: t · (h/merge) · (w/merge). */
static int64_t image_token_count(const int grid[3], int merge) {
    return (int64_t)grid[0] * (grid[1] / merge) * (grid[2] / merge);
}

/* The order matches the metadata's names (read_config). */
enum { MROPE_VISION_START, MROPE_TOKEN_TYPE, MROPE_SEQUENTIAL };

/* How many image-token runs get 3-D ids. transformers ≤ 4.5x (ABC, VLM2Vec) counts the images
 * announced by <|vision_start|> directly before an image token, then gives 3-D ids to that many runs
 * in order; transformers 5 gives them to every run. GME calls the decoder without position ids, and
 * transformers 4.4x's decoder then numbers every token like text: no run gets 3-D ids. */
static int64_t mrope_3d_runs(const text_config *c, const int32_t *ids, int64_t L, int64_t total_runs) {
    if (c->mrope_rule == MROPE_TOKEN_TYPE) return total_runs;
    if (c->mrope_rule == MROPE_SEQUENTIAL) return 0;
    int64_t announced = 0;
    for (int64_t i = 0; i + 1 < L; i++)
        if (ids[i] == c->vision_start_token && is_visual_token(c, ids[i + 1])) announced++;
    return MIN(announced, total_runs);
}

/* pos [3][L] (t, h, w) for every token. Text: all three = a running index. An image run of 3-D ids
 * (each run is one image: t·(h/m)·(w/m) tokens) at merged-grid (tt, row, col) gets (s+tt, s+row, s+col)
 * with s = the running index, which then continues at the largest id so far + 1. `grid` is NULL when
 * there is no image; image tokens must then be absent. */
static abc_status mrope_position_ids(const text_config *c, const int32_t *ids, int64_t L,
                                     const int grid[3], int32_t *pos, abc_error *err) {
    int64_t per_image = grid ? image_token_count(grid, c->merge_size) : 0, n_image_tokens = 0;
    for (int64_t i = 0; i < L; i++) n_image_tokens += is_visual_token(c, ids[i]);
    if (n_image_tokens && !per_image)
        return fail(err, ABC_ERR_PROMPT, "the tokens contain %lld image tokens but there is no image",
                    (long long)n_image_tokens);
    if (per_image && (n_image_tokens == 0 || n_image_tokens % per_image != 0))
        return fail(err, ABC_ERR_PROMPT,
                    "the image needs %lld image tokens (a run per placeholder) but the tokens contain %lld",
                    (long long)per_image, (long long)n_image_tokens);
    const int64_t runs_3d = per_image ? mrope_3d_runs(c, ids, L, n_image_tokens / per_image) : 0;
    const int64_t mh = grid ? grid[1] / c->merge_size : 0, mw = grid ? grid[2] / c->merge_size : 0;
    int32_t *pt = pos, *ph = pos + L, *pw = pos + 2 * L;
    int64_t next = 0, done_3d = 0, i = 0;
    while (i < L) {
        if (is_visual_token(c, ids[i]) && done_3d < runs_3d) {
            if (i + per_image > L)
                return fail(err, ABC_ERR_PROMPT, "an image-token run at %lld is shorter than the image's %lld tokens",
                            (long long)i, (long long)per_image);
            for (int64_t k = 0; k < per_image; k++) {
                if (!is_visual_token(c, ids[i + k]))
                    return fail(err, ABC_ERR_PROMPT,
                                "an image-token run at %lld is shorter than the image's %lld tokens",
                                (long long)i, (long long)per_image);
                pt[i + k] = (int32_t)(next + k / (mh * mw));
                ph[i + k] = (int32_t)(next + (k / mw) % mh);
                pw[i + k] = (int32_t)(next + k % mw);
            }
            next += MAX((int64_t)grid[0], MAX(mh, mw));
            i += per_image;
            done_3d++;
        } else {
            pt[i] = ph[i] = pw[i] = (int32_t)next++;
            i++;
        }
    }
    return ABC_OK;
}

/* ---- the decoder ---- */

/* su/longrope: the factor set a sequence of L tokens uses (NULL without su scaling). */
static const float *rope_su_factors(const text_config *c, int64_t L) {
    if (!c->rope_short_factor) return NULL;
    return L > c->rope_original_max_positions ? c->rope_long_factor : c->rope_short_factor;
}

/* su/longrope scales cos and sin by sqrt(1 + ln(max/orig)/ln(orig)) when the context was extended
 * (computed in double as Python does, applied in float32); 1 otherwise. */
static float rope_su_attention_factor(const text_config *c) {
    if (!c->rope_short_factor || c->rope_max_positions <= c->rope_original_max_positions) return 1.0f;
    const double scale = (double)c->rope_max_positions / (double)c->rope_original_max_positions;
    return (float)sqrt(1.0 + log(scale) / log((double)c->rope_original_max_positions));
}

/* cos/sin [L][head_dim/2]: frequency j = theta^(−2j/head_dim) (divided by the su factor j when the
 * model has su scaling) uses position component k for the j in the k-th block of mrope_section
 * (contiguous blocks t, h, w); 1-D positions (Phi-3) have mrope_section {head_dim/2, 0, 0}. */
static void text_rotary_tables(const text_config *c, const int32_t *pos, int64_t L, float *cos_t,
                               float *sin_t) {
    const int half = c->head_dim / 2;
    float inv_freq[1024]; /* head_dim ≤ 2048 is checked at load */
    int component[1024] = {0}; /* every frequency has a component even if mrope_section falls short */
    const float *factors = rope_su_factors(c, L);
    if (factors) /* torch: 1 / (factor · theta^e), every step in float32 */
        for (int j = 0; j < half; j++)
            inv_freq[j] = 1.0f / (factors[j] * powf((float)c->rope_theta, (float)(2 * j) / (float)c->head_dim));
    else
        rope_inverse_frequencies(c->rope_theta, c->head_dim, inv_freq);
    const float scale = rope_su_attention_factor(c);
    for (int k = 0, j = 0; k < 3; k++)
        for (int r = 0; r < c->mrope_section[k]; r++) component[j++] = k;
    for (int64_t i = 0; i < L; i++) {
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[component[j] * L + i] * inv_freq[j];
            cos_t[i * half + j] = cosf(angle) * scale;
            sin_t[i * half + j] = sinf(angle) * scale;
        }
    }
}

typedef struct {
    float *h, *q, *k, *v, *att, *gate, *up, *cos_t, *sin_t;
    adapter_scratch adapter;
} text_state;

/* Sequences packed end to end: sequence i is rows [start[i], start[i + 1]); one input is {0, L}. */
typedef struct {
    const int64_t *start; /* n + 1 offsets */
    int n;
} sequence_spans;

/* One decoder layer on the residual stream x [L][H]:
 *   x += o(attention(rope(q(n)), rope(k(n)), v(n))),  n = RMSNorm(x)
 *   x += down(silu(gate(n)) · up(n)),                  n = RMSNorm(x)                                */
static void text_layer_forward(thread_pool *pool, const text_config *c, const text_layer *l, float *x,
                               text_state *s, const sequence_spans *spans, const adapter_scratch *adapter) {
    const int H = c->hidden, hd = c->head_dim;
    const int64_t q_width = (int64_t)c->n_heads * hd, kv_width = (int64_t)c->n_kv_heads * hd;
    const int64_t L = spans->start[spans->n];

    rms_norm(pool, s->h, x, l->input_norm, L, H, c->rms_eps);
    linear_forward(pool, &l->q, s->h, L, s->q, adapter);
    linear_forward(pool, &l->k, s->h, L, s->k, adapter);
    linear_forward(pool, &l->v, s->h, L, s->v, adapter);
    rope_rows(pool, s->q, L, q_width, c->n_heads, hd, s->cos_t, s->sin_t);
    rope_rows(pool, s->k, L, kv_width, c->n_kv_heads, hd, s->cos_t, s->sin_t);
    for (int i = 0; i < spans->n; i++) { /* block-diagonal: each sequence attends within itself */
        const int64_t at = spans->start[i];
        attention(pool, s->att + at * q_width, s->q + at * q_width, s->k + at * kv_width, s->v + at * kv_width,
                  spans->start[i + 1] - at, c->n_heads, c->n_kv_heads, hd, q_width, kv_width, c->causal);
    }
    linear_forward(pool, &l->o, s->att, L, s->h, adapter);
    add_in_place(pool, x, s->h, (size_t)L * H);

    rms_norm(pool, s->h, x, l->post_attn_norm, L, H, c->rms_eps);
    linear_forward(pool, &l->gate, s->h, L, s->gate, adapter);
    linear_forward(pool, &l->up, s->h, L, s->up, adapter);
    swiglu_in_place(pool, s->gate, s->up, (size_t)L * c->intermediate);
    linear_forward(pool, &l->down, s->gate, L, s->h, adapter);
    add_in_place(pool, x, s->h, (size_t)L * H);
}

/* The decoder's input x [L][H]: token embeddings, image tokens (id c->image_token) taking the rows of
 * image_embeds in order, repeating for every run. The caller has validated ids (< vocab, and image
 * tokens only with image_embeds). */
static void language_embed_inputs(const text_config *c, const text_weights *w, const int32_t *ids, int64_t L,
                                  const float *image_embeds, int64_t n_image_rows, float *x) {
    const int H = c->hidden;
    int64_t image_row = 0;
    for (int64_t i = 0; i < L; i++) {
        if (is_visual_token(c, ids[i]) && image_embeds) {
            memcpy(x + i * H, image_embeds + (image_row % n_image_rows) * H, (size_t)H * sizeof *x);
            image_row++;
        } else {
            tensor_row_f32(w->embed_tokens, ids[i], x + i * H);
        }
    }
}

/* Decoder layers → final RMSNorm on x [L][H] in place (the inputs embeddings in, the last hidden
 * states out). Packed sequences share every row-wise step and attend only within themselves; pos holds
 * each sequence's position ids [3][its length], one after another. */
static abc_status language_decode(thread_pool *pool, const text_config *c, const text_weights *w,
                                  const sequence_spans *spans, const int32_t *pos, int adapter_slot, workspace *ws,
                                  float *x, abc_error *err) {
    const int H = c->hidden, half = c->head_dim / 2;
    const int64_t L = spans->start[spans->n];
    const int64_t q_width = (int64_t)c->n_heads * c->head_dim,
                  kv_width = (int64_t)c->n_kv_heads * c->head_dim;
    const bool use_adapter = adapter_slot != ADAPTER_NONE && w->adapter_rank > 0;
    text_state s;
    const size_t sizes[] = {floats_for(L, H),
                            floats_for(L, q_width),
                            floats_for(L, kv_width),
                            floats_for(L, kv_width),
                            floats_for(L, q_width),
                            floats_for(L, c->intermediate),
                            floats_for(L, c->intermediate),
                            floats_for(L, half),
                            floats_for(L, half),
                            use_adapter ? floats_for(L, w->adapter_rank) : 0,
                            use_adapter ? floats_for(L, w->adapter_width) : 0};
    float **arrays[] = {&s.h,   &s.q,     &s.k,     &s.v, &s.att, &s.gate, &s.up, &s.cos_t, &s.sin_t,
                        &s.adapter.low_rank, &s.adapter.delta};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the language model (%lld tokens)", (long long)L);
    s.adapter.slot = adapter_slot;
    const adapter_scratch *adapter = use_adapter ? &s.adapter : NULL;

    for (int i = 0; i < spans->n; i++) { /* positions (and su factors) are each sequence's own */
        const int64_t at = spans->start[i];
        text_rotary_tables(c, pos + 3 * at, spans->start[i + 1] - at, s.cos_t + at * half, s.sin_t + at * half);
    }
    for (int i = 0; i < c->n_layers; i++) text_layer_forward(pool, c, &w->layers[i], x, &s, spans, adapter);
    rms_norm(pool, x, x, w->final_norm, L, H, c->rms_eps);
    return ABC_OK;
}

/* ================================================================================================
 * 10. Pooling and heads: last hidden states [L][H] → one embedding (docs/model.md#pooling-and-heads)
 * ================================================================================================ */

/* POOL_NONE: no single vector (a multi-vector model such as ColQwen2: abc_embed_multi only). */
typedef enum { POOL_MEAN_NONZERO, POOL_LAST, POOL_MEAN_VISION_SPAN, POOL_NONE } pooling_kind;

/* ABC's mlp_head: y = x + W2·selu(W1·x + b1) + b2. */
typedef struct {
    const tensor *w1, *b1; /* [D][H], [D] */
    const tensor *w2, *b2; /* [H][D], [H] */
    int64_t inner;         /* D */
} mlp_head;

/* ABC's mean: the sum of the rows whose token id is not 0 ("!"; ABC zeroes them) divided by the
 * number of ALL rows, as ABC's own code does. Accumulated in double. */
static void pool_mean_nonzero(const float *hidden, const int32_t *ids, int64_t L, int H, double *acc,
                              float *out) {
    for (int j = 0; j < H; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < L; i++) {
        if (ids[i] == 0) continue;
        const float *row = hidden + i * H;
        for (int j = 0; j < H; j++) acc[j] += row[j];
    }
    for (int j = 0; j < H; j++) out[j] = (float)(acc[j] / (double)L);
}

/* jina-embeddings-v4: the mean of every row (float32 sum, as torch does it), or with an image the mean of
 * the rows from the first <|vision_start|> to the first <|vision_end|> after it, both included. */
static void pool_mean_vision_span(const float *hidden, const int32_t *ids, int64_t L, int H, int32_t start_id,
                                  int32_t end_id, float *out) {
    int64_t first = 0, last = L - 1;
    for (int64_t i = 0; i < L; i++)
        if (ids[i] == start_id) {
            first = i;
            for (last = i; last < L - 1 && ids[last] != end_id; last++) {}
            break;
        }
    for (int j = 0; j < H; j++) out[j] = 0.0f;
    for (int64_t i = first; i <= last; i++) {
        const float *row = hidden + i * H;
        for (int j = 0; j < H; j++) out[j] += row[j];
    }
    for (int j = 0; j < H; j++) out[j] /= (float)(last - first + 1);
}

static const char *pooling_name(pooling_kind k) {
    return k == POOL_LAST ? "last token" : k == POOL_MEAN_VISION_SPAN ? "mean (the image span with an image)"
         : k == POOL_NONE ? "none" : "mean (ids != 0)";
}

/* VLM2Vec: the last position's (post-norm) state. */
static void pool_last(const float *hidden, int64_t L, int H, float *out) {
    memcpy(out, hidden + (L - 1) * H, (size_t)H * sizeof *out);
}

/* SELU with PyTorch's constants. */
static float selu(float x) {
    const float alpha = 1.6732632423543772848170429916717f, scale = 1.0507009873554804934193349852946f;
    return x > 0.0f ? scale * x : scale * (alpha * (expf(x) - 1.0f));
}

/* x [H] → out [H] = x + W2·selu(W1·x + b1) + b2; inner holds D floats. */
static void mlp_head_forward(thread_pool *pool, const mlp_head *head, const float *x, int H, float *inner,
                             float *out) {
    matmul(pool, inner, x, 1, head->w1, head->b1);
    for (int64_t j = 0; j < head->inner; j++) inner[j] = selu(inner[j]);
    matmul(pool, out, inner, 1, head->w2, head->b2);
    for (int j = 0; j < H; j++) out[j] = x[j] + out[j];
}

/* x / max(‖x‖₂, 1e-12), as torch.nn.functional.normalize. */
static void l2_normalize(float *x, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * x[i];
    const float norm = (float)MAX(sqrt(sum), 1e-12);
    for (int i = 0; i < n; i++) x[i] = x[i] / norm;
}

/* A multi-vector output (late interaction: ColQwen2, jina-embeddings-v4's multi-vector head): every
 * token's last hidden state through one linear projection [D][H] (+ bias), each result L2-normalised on
 * its own. Tensors multi_vector.proj.weight/.bias, metadata model.multi_vector_dim
 * (model_convert/FORMAT.md). jina's task adapters carry a LoRA of the projection: it is a linear_layer
 * so the call's adapter slot applies. */
typedef struct {
    linear_layer proj;                /* [D][H], [D] */
    int dim;                          /* D; 0: the model has none */
    int adapter_rank, adapter_width;  /* largest adapter rank on the projection (0: none) */
} multi_vector_head;

/* hidden [L][H] → out [L][D] under adapter slot `adapter_slot` (ADAPTER_NONE: none). */
static abc_status multi_vector_forward(thread_pool *pool, const multi_vector_head *mv, const float *hidden,
                                       int64_t L, int adapter_slot, float *out, abc_error *err) {
    adapter_scratch scratch = {NULL, NULL, adapter_slot};
    const bool use_adapter = adapter_slot != ADAPTER_NONE && mv->adapter_rank > 0;
    if (use_adapter) {
        scratch.low_rank = xmalloc((size_t)L * (size_t)mv->adapter_rank * sizeof(float));
        scratch.delta = xmalloc((size_t)L * (size_t)mv->adapter_width * sizeof(float));
        if (!scratch.low_rank || !scratch.delta) {
            xfree(scratch.low_rank);
            xfree(scratch.delta);
            return fail(err, ABC_ERR_NOMEM, "out of memory for the multi-vector adapter");
        }
    }
    linear_forward(pool, &mv->proj, hidden, L, out, use_adapter ? &scratch : NULL);
    if (use_adapter) {
        xfree(scratch.low_rank);
        xfree(scratch.delta);
    }
    for (int64_t i = 0; i < L; i++) l2_normalize(out + i * mv->dim, mv->dim);
    return ABC_OK;
}

/* ================================================================================================
 * 11a. The model: what every family shares (configuration, binding, prompts, the pipeline driver)
 *
 * Loading reads every metadata value the forward pass uses, checks it (positive, in range,
 * consistent with the others), then binds every tensor by name with its expected shape and dtype,
 * so the forward pass never meets a surprise. Any mismatch is ABC_ERR_FORMAT naming the key or
 * tensor. What differs between architectures (the image side, its preprocessing, prompt assembly,
 * position ids) lives in a model_family (11b, 11c), chosen by the file's general.architecture from
 * the table in 11d.
 * ================================================================================================ */

#define MODEL_MAX_DIM (1 << 20)     /* no width or count in a sane model comes near this */
#define MODEL_MAX_MATRYOSHKA 32     /* model.matryoshka_dims entries */
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_HEAD_DIM 2048     /* the rotary tables' local arrays depend on it */
#define MODEL_MAX_VOCAB (1 << 24)

typedef struct model_family model_family;
typedef struct binder binder;

/* One input ready for the model: token ids (image tokens expanded) and, with an image, its pixel values. */
typedef struct {
    int_vec ids;
    float *pixels;
    size_t n_patches;
    int grid[3];
    int adapter; /* the run-time adapter slot in use, or ADAPTER_NONE */
} model_sequence;

static void model_sequence_free(model_sequence *seq) {
    int_vec_free(&seq->ids);
    free(seq->pixels);
    memset(seq, 0, sizeof *seq);
}

struct abc_model {
    weight_file wf;
    abc_model_params params;
    const model_family *family;
    void *family_data;        /* the family's image side: configuration, weights, preprocessing */
    text_config text;
    text_weights text_w;
    pooling_kind pooling;
    bool has_head, normalize;
    mlp_head head;
    int embedding_dim;        /* 0 with POOL_NONE: no single vector */
    multi_vector_head multi;  /* multi.dim 0: no per-token output */
    int adapter_modules;      /* layers the query adapter touches (0: no adapter) */
    int vision_adapter_rank;  /* largest query-adapter rank on the image side (0: none) */
    tokenizer *tok;
    /* NUL-terminated copies of metadata strings */
    char *preset, *dtype, *prompt_image_text, *prompt_image, *prompt_text, *placeholder;
    char *prompt_instruction; /* what "{instruction}" becomes without abc_input.instruction; NULL: no slot */
    char *prompt_video_text, *prompt_video, *video_placeholder; /* NULL: no video input */
    char *prompt_text_candidate; /* the text prompt of role candidate (jina-v4 "Passage: "); NULL: prompt_text */
    char *description;
    /* Run-time adapters: the tensor prefix of each slot (NULL: slot unused); slot 0 the query adapter. */
    const char *adapter_prefix[MODEL_MAX_ADAPTERS];
    char *task_names[MODEL_MAX_ADAPTERS]; /* task i is slot i + 1; NULL-terminated (abc_model_tasks) */
    bool task_query_prompt[MODEL_MAX_ADAPTERS]; /* task i embeds candidates with the query prompt too */
    int n_tasks;
    int default_adapter; /* the slot of abc_input.task == NULL: the default task, or ADAPTER_NONE */
    int n_matryoshka;    /* the dims abc_input.dim may take besides the full one (0: any in [1, full]) */
    int matryoshka[MODEL_MAX_MATRYOSHKA];
};

struct abc_context {
    const abc_model *model;
    thread_pool *pool;
    int n_threads;
    abc_stage_callback on_stage;
    void *on_stage_user;
    workspace ws;
    abc_error err; /* the last call's outcome */
    mem_arena arena; /* abc_context_params.arena (base NULL: none), or measuring for abc_embed_arena_size */
};

/* One model family: everything that differs between architectures. The loader, the API and the CLI
 * reach a family only through these members, so a new family is a new table entry (11d) and its own
 * section. */
struct model_family {
    const char *architecture;     /* general.architecture in the .abc file */
    const char *const *stages;    /* the stages it emits, in order, NULL-terminated (ABC_STAGE_*) */
    bool query_adapter;           /* role=query can switch on a query adapter (AUTO decided from the inputs) */
    bool text_qkv_bias;           /* the decoder's q/k/v projections have biases */
    /* Family metadata (text rope, image side, preprocessing, special tokens); sets m->family_data. */
    abc_status (*read_config)(abc_model *m, abc_error *err);
    /* The image-side tensors; sets m->vision_adapter_rank. */
    abc_status (*bind)(binder *b, abc_model *m);
    void (*free_data)(void *family_data);
    /* abc_model_description's text. */
    void (*describe)(const abc_model *m, char *out, size_t cap);
    /* Prompt → seq->ids, image → seq->pixels (emitting the preprocessing stages); the driver runs the
     * model on it. On failure the caller frees what seq holds. */
    abc_status (*prepare)(abc_context *ctx, const abc_input *in, const char *prompt, bool has_image, int adapter,
                          model_sequence *seq);
    /* Caller-prepared pixels and image tokens (abc_embed_tokens) checked against the model. */
    abc_status (*check_image)(abc_context *ctx, size_t n_image_tokens, const float *pixels, size_t n_patches,
                              const int grid[3]);
    /* Position ids of the sequence into pos (room for 3·L); emits "position_ids". */
    abc_status (*position_ids)(abc_context *ctx, const int32_t *ids, int64_t L, const float *pixels,
                               const int grid[3], int32_t *pos);
    /* Pixel values → *image [n_rows][text hidden], emitting the encoder's stages. */
    abc_status (*encode_image)(abc_context *ctx, const float *pixels, size_t n_patches, const int grid[3],
                               int adapter, float **image, int64_t *n_rows);
};

static bool family_emits(const model_family *f, const char *stage) {
    for (const char *const *s = f->stages; *s; s++)
        if (strcmp(*s, stage) == 0) return true;
    return false;
}

static const tokenizer *model_tokenizer(const abc_model *m) { return m->tok; }

/* ---- metadata ---- */

/* An integer metadata value that must lie in [lo, hi]. */
static bool meta_int_in(const weight_file *wf, const char *key, int64_t lo, int64_t hi, int64_t *out,
                        abc_error *err) {
    int64_t v;
    if (!wf_int(wf, key, &v, err)) return false;
    if (v < lo || v > hi) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' = %lld is out of range [%lld, %lld]", key, (long long)v,
             (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

static bool meta_dim(const weight_file *wf, const char *key, int64_t hi, int *out, abc_error *err) {
    int64_t v;
    if (!meta_int_in(wf, key, 1, hi, &v, err)) return false;
    *out = (int)v;
    return true;
}

/* A float metadata value that must be finite and in (0, hi). */
static bool meta_positive(const weight_file *wf, const char *key, double hi, double *out, abc_error *err) {
    if (!wf_f64(wf, key, out, err)) return false;
    if (!(*out > 0.0 && *out < hi)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' = %g is out of range (0, %g)", key, *out, hi);
        return false;
    }
    return true;
}

/* A NUL-terminated copy of a string value (which must not contain NUL bytes). */
static bool meta_string_copy(const weight_file *wf, const char *key, char **out, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return false;
    if (memchr(s, 0, len)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' contains a NUL byte", key);
        return false;
    }
    char *copy = xmalloc(len + 1);
    if (!copy) {
        fail(err, ABC_ERR_NOMEM, "out of memory reading metadata '%s'", key);
        return false;
    }
    memcpy(copy, s, len);
    copy[len] = 0;
    *out = copy;
    return true;
}

/* A string value that must be one of `choices`; *out receives its index. */
static bool meta_choice(const weight_file *wf, const char *key, const char *const *choices, int n_choices,
                        int *out, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return false;
    for (int i = 0; i < n_choices; i++) {
        if (strlen(choices[i]) == len && memcmp(s, choices[i], len) == 0) {
            *out = i;
            return true;
        }
    }
    fail(err, ABC_ERR_FORMAT, "metadata '%s' = '%.*s' is not supported", key, (int)MIN(len, 64), s);
    return false;
}

static bool meta_token_id(const weight_file *wf, const char *key, int64_t vocab, int32_t *out, abc_error *err) {
    int64_t v;
    if (!meta_int_in(wf, key, 0, vocab - 1, &v, err)) return false;
    *out = (int32_t)v;
    return true;
}

/* The decoder's sizes; its rotary layout is the family's (read_config). */
static abc_status read_text_config(const weight_file *wf, text_config *c, abc_error *err) {
    int64_t vocab;
    double eps;
    if (!meta_dim(wf, "text.hidden_size", MODEL_MAX_DIM, &c->hidden, err) ||
        !meta_dim(wf, "text.intermediate_size", MODEL_MAX_DIM, &c->intermediate, err) ||
        !meta_dim(wf, "text.num_layers", MODEL_MAX_LAYERS, &c->n_layers, err) ||
        !meta_dim(wf, "text.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_dim(wf, "text.num_kv_heads", MODEL_MAX_DIM, &c->n_kv_heads, err) ||
        !meta_dim(wf, "text.head_dim", MODEL_MAX_HEAD_DIM, &c->head_dim, err) ||
        !meta_int_in(wf, "text.vocab_size", 1, MODEL_MAX_VOCAB, &vocab, err) ||
        !meta_positive(wf, "text.rms_norm_eps", 1.0, &eps, err) ||
        !meta_positive(wf, "text.rope_theta", 1e30, &c->rope_theta, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->vocab = vocab;
    c->rms_eps = (float)eps;
    if ((int64_t)c->n_heads * c->head_dim != c->hidden)
        return fail(err, ABC_ERR_FORMAT, "text.num_heads %d × text.head_dim %d != text.hidden_size %d",
                    c->n_heads, c->head_dim, c->hidden);
    if (c->n_heads % c->n_kv_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "text.num_heads %d is not a multiple of text.num_kv_heads %d",
                    c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return fail(err, ABC_ERR_FORMAT, "text.head_dim %d is odd", c->head_dim);
    return ABC_OK;
}

/* Prompt templates: the image ones must hold the placeholder, the text one must not. */
static abc_status read_prompts(const weight_file *wf, abc_model *m, abc_error *err) {
    /* optional: jina-v4 embeds an image or a text, never both */
    if (wf_meta(wf, "prompt.image_text") && !meta_string_copy(wf, "prompt.image_text", &m->prompt_image_text, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (!meta_string_copy(wf, "prompt.image", &m->prompt_image, err) ||
        !meta_string_copy(wf, "prompt.text", &m->prompt_text, err) ||
        !meta_string_copy(wf, "prompt.image_placeholder", &m->placeholder, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (!m->placeholder[0]) return fail(err, ABC_ERR_FORMAT, "metadata 'prompt.image_placeholder' is empty");
    if ((m->prompt_image_text && !strstr(m->prompt_image_text, m->placeholder)) || !strstr(m->prompt_image, m->placeholder))
        return fail(err, ABC_ERR_FORMAT, "an image prompt template lacks the placeholder '%s'", m->placeholder);
    if (wf_meta(wf, "prompt.text_candidate") &&
        !meta_string_copy(wf, "prompt.text_candidate", &m->prompt_text_candidate, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (strstr(m->prompt_text, m->placeholder) ||
        (m->prompt_text_candidate && strstr(m->prompt_text_candidate, m->placeholder)))
        return fail(err, ABC_ERR_FORMAT, "the text prompt template contains the image placeholder");
    /* optional: GME puts a task instruction in the system turn */
    if (wf_meta(wf, "prompt.instruction") && !meta_string_copy(wf, "prompt.instruction", &m->prompt_instruction, err))
        return err ? err->code : ABC_ERR_FORMAT;
    /* optional: video prompts (the family checks that the rest of the video metadata is there) */
    if (!wf_meta(wf, "prompt.video_placeholder")) return ABC_OK;
    if (!meta_string_copy(wf, "prompt.video_placeholder", &m->video_placeholder, err) ||
        !meta_string_copy(wf, "prompt.video_text", &m->prompt_video_text, err) ||
        !meta_string_copy(wf, "prompt.video", &m->prompt_video, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (!m->video_placeholder[0] || !strstr(m->prompt_video_text, m->video_placeholder) ||
        !strstr(m->prompt_video, m->video_placeholder))
        return fail(err, ABC_ERR_FORMAT, "a video prompt template lacks the placeholder '%s'", m->video_placeholder);
    return ABC_OK;
}

/* One name of a comma-separated list: letters, digits, '-' and '_' (it becomes part of tensor names). */
static bool task_name_valid(const char *s, size_t n) {
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static int task_index(const abc_model *m, const char *name, size_t n) {
    for (int i = 0; i < m->n_tasks; i++)
        if (strlen(m->task_names[i]) == n && memcmp(m->task_names[i], name, n) == 0) return i;
    return -1;
}

/* The run-time adapters (FORMAT.md "Run-time adapters") and the Matryoshka dims: slot 0 is always the
 * query adapter's query_adapter.*; task_adapter.names "a,b,c" gives slots 1.. with task_adapter.NAME.*. */
static abc_status read_adapters(const weight_file *wf, abc_model *m, abc_error *err) {
    m->adapter_prefix[ADAPTER_QUERY] = "query_adapter.";
    m->default_adapter = ADAPTER_NONE;
    if (wf_meta(wf, "model.matryoshka_dims")) {
        const meta_entry *e = wf_meta(wf, "model.matryoshka_dims");
        int64_t dims[MODEL_MAX_MATRYOSHKA];
        if (e->count < 1 || e->count > MODEL_MAX_MATRYOSHKA ||
            !wf_int_array(wf, "model.matryoshka_dims", dims, (size_t)e->count, err))
            return fail(err, ABC_ERR_FORMAT, "metadata 'model.matryoshka_dims' must be 1 to %d integers",
                        MODEL_MAX_MATRYOSHKA);
        for (uint64_t i = 0; i < e->count; i++) {
            if (dims[i] < 1 || dims[i] > m->embedding_dim)
                return fail(err, ABC_ERR_FORMAT, "metadata 'model.matryoshka_dims' has %lld, outside [1, %d]",
                            (long long)dims[i], m->embedding_dim);
            m->matryoshka[m->n_matryoshka++] = (int)dims[i];
        }
    }
    if (!wf_meta(wf, "task_adapter.names")) return ABC_OK;
    const char *list;
    size_t len;
    if (!wf_str(wf, "task_adapter.names", &list, &len, err)) return err ? err->code : ABC_ERR_FORMAT;
    for (size_t at = 0; at <= len;) {
        size_t end = at;
        while (end < len && list[end] != ',') end++;
        if (!task_name_valid(list + at, end - at) || task_index(m, list + at, end - at) >= 0)
            return fail(err, ABC_ERR_FORMAT, "metadata 'task_adapter.names' has an empty, repeated or malformed name");
        if (m->n_tasks == MODEL_MAX_ADAPTERS - 1)
            return fail(err, ABC_ERR_FORMAT, "metadata 'task_adapter.names' lists more than %d tasks",
                        MODEL_MAX_ADAPTERS - 1);
        char *name = xmalloc(end - at + 1), *prefix = xmalloc(end - at + sizeof "task_adapter..");
        if (!name || !prefix) {
            free(name);
            free(prefix);
            return fail(err, ABC_ERR_NOMEM, "out of memory reading the task adapters");
        }
        memcpy(name, list + at, end - at);
        name[end - at] = 0;
        snprintf(prefix, end - at + sizeof "task_adapter..", "task_adapter.%s.", name);
        m->task_names[m->n_tasks++] = name;
        m->adapter_prefix[m->n_tasks] = prefix;
        at = end + 1;
    }
    m->default_adapter = 1;
    const char *s;
    if (wf_meta(wf, "task_adapter.default")) {
        if (!wf_str(wf, "task_adapter.default", &s, &len, err)) return err ? err->code : ABC_ERR_FORMAT;
        const int i = task_index(m, s, len);
        if (i < 0) return fail(err, ABC_ERR_FORMAT, "metadata 'task_adapter.default' is not one of task_adapter.names");
        m->default_adapter = i + 1;
    }
    if (wf_meta(wf, "task_adapter.query_prompt")) {
        if (!wf_str(wf, "task_adapter.query_prompt", &s, &len, err)) return err ? err->code : ABC_ERR_FORMAT;
        for (size_t at = 0; at < len;) {
            size_t end = at;
            while (end < len && s[end] != ',') end++;
            const int i = task_index(m, s + at, end - at);
            if (i < 0)
                return fail(err, ABC_ERR_FORMAT, "metadata 'task_adapter.query_prompt' names a task not in task_adapter.names");
            m->task_query_prompt[i] = true;
            at = end + 1;
        }
    }
    return ABC_OK;
}

/* Architecture, preset, the decoder, the family's part, the pooling and head, the prompts. */
static abc_status read_config(abc_model *m, const model_family *const *families, size_t n_families, abc_error *err) {
    const weight_file *wf = &m->wf;
    static const char *const attentions[] = {"bidirectional", "causal"};
    static const char *const poolings[] = {"mean_nonzero", "last", "mean_vision_span", "none"}; /* pooling_kind order */
    static const char *const heads[] = {"none", "mlp"};
    static const char *const rules[] = {"vision_start", "token_type", "sequential"};
    int attn, pooling, head, rule = 0;
    const char *arch;
    size_t arch_len;
    if (!wf_str(wf, "general.architecture", &arch, &arch_len, err)) return err ? err->code : ABC_ERR_FORMAT;
    for (size_t i = 0; i < n_families && !m->family; i++)
        if (strlen(families[i]->architecture) == arch_len && memcmp(arch, families[i]->architecture, arch_len) == 0)
            m->family = families[i];
    if (!m->family)
        return fail(err, ABC_ERR_UNSUPPORTED, "architecture '%.*s' is not supported (qwen2_vl or phi3_v)",
                    (int)MIN(arch_len, 64), arch);
    if (!meta_string_copy(wf, "general.preset", &m->preset, err)) return err ? err->code : ABC_ERR_FORMAT;
    if (wf_meta(wf, "general.dtype") && !meta_string_copy(wf, "general.dtype", &m->dtype, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (wf_meta(wf, "general.policy")) { /* mixed precision: shown with the dtype ("q4 (policy text=q4,...)") */
        char *policy = NULL;
        if (!meta_string_copy(wf, "general.policy", &policy, err)) return err ? err->code : ABC_ERR_FORMAT;
        const char *dtype = m->dtype ? m->dtype : "?";
        const size_t n = strlen(dtype) + strlen(policy) + 16;
        char *both = xmalloc(n);
        if (both) snprintf(both, n, "%s (policy %s)", dtype, policy);
        free(policy);
        if (!both) return fail(err, ABC_ERR_NOMEM, "out of memory reading metadata 'general.policy'");
        free(m->dtype);
        m->dtype = both;
    }
    abc_status st = read_prompts(wf, m, err); /* first: the family checks its video metadata against them */
    if (st == ABC_OK) st = read_text_config(wf, &m->text, err);
    if (st == ABC_OK) st = m->family->read_config(m, err);
    if (st != ABC_OK) return st;
    int64_t normalize, dim;
    if (!meta_choice(wf, "model.attention", attentions, 2, &attn, err) ||
        !meta_choice(wf, "model.pooling", poolings, (int)(sizeof poolings / sizeof *poolings), &pooling, err) ||
        !meta_choice(wf, "model.head", heads, 2, &head, err) ||
        !meta_int_in(wf, "model.normalize", 0, 1, &normalize, err) ||
        !meta_int_in(wf, "model.embedding_dim", 1, MODEL_MAX_DIM, &dim, err))
        return err ? err->code : ABC_ERR_FORMAT;
    /* Absent in early files: the transformers ≤ 4.5x rule both presets were trained with. */
    if (wf_meta(wf, "model.mrope_rule") && !meta_choice(wf, "model.mrope_rule", rules, 3, &rule, err))
        return err ? err->code : ABC_ERR_FORMAT;
    m->text.causal = attn == 1;
    m->text.mrope_rule = rule;
    m->pooling = (pooling_kind)pooling; /* poolings[] lists the names in pooling_kind's order */
    m->has_head = head == 1;
    m->normalize = normalize == 1;
    m->embedding_dim = (int)dim;
    if (dim != m->text.hidden)
        return fail(err, ABC_ERR_FORMAT, "model.embedding_dim %lld != text.hidden_size %d", (long long)dim,
                    m->text.hidden);
    /* optional: one vector per token (the projection's width) */
    int64_t multi = 0;
    if (wf_meta(wf, "model.multi_vector_dim") && !meta_int_in(wf, "model.multi_vector_dim", 1, MODEL_MAX_DIM, &multi, err))
        return err ? err->code : ABC_ERR_FORMAT;
    m->multi.dim = (int)multi;
    if (m->pooling == POOL_NONE) {
        if (!multi) return fail(err, ABC_ERR_FORMAT, "model.pooling 'none' needs model.multi_vector_dim");
        if (m->has_head) return fail(err, ABC_ERR_FORMAT, "model.pooling 'none' cannot have a head");
        m->embedding_dim = 0;
    }
    return read_adapters(wf, m, err);
}

/* ---- binding tensors ---- */

struct binder {
    const weight_file *wf;
    abc_error *err;
    abc_status status;      /* the first failure; binding stops there */
    bool *claimed;          /* per tensor of the file: bound as an adapter factor */
    int adapter_modules;
    const abc_model *m;     /* its adapter_prefix[] names each slot's tensors */
    int slot_modules[MODEL_MAX_ADAPTERS]; /* layers each adapter slot touches */
};

/* Looks a tensor up by a printf-formatted name and checks it: `matrix` = 2-D [d0][d1] of a weight
 * dtype (f32, f16, bf16, q8); otherwise 1-D [d0] f32. NULL after the first failure. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static const tensor *bind_tensor(binder *b, bool matrix, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (b->status != ABC_OK) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const tensor *t = wf_tensor(b->wf, name);
    if (!t) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' is missing", name);
        return NULL;
    }
    const bool shape_ok = matrix ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1)
                                 : (t->ndim == 1 && t->shape[0] == d0);
    if (!shape_ok) {
        char want[64];
        if (matrix) snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "[%lld]", (long long)d0);
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' has %d dims [%lld, %lld, ...], expected %s", name,
                         t->ndim, (long long)t->shape[0], (long long)t->shape[1], want);
        return NULL;
    }
    const bool dtype_ok = matrix ? (t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16 ||
                                    t->dtype == DT_Q8 || t->dtype == DT_Q4)
                                 : t->dtype == DT_F32;
    if (!dtype_ok) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' has dtype %s, expected %s", name,
                         dtype_name(t->dtype), matrix ? "f32, f16, bf16, q8 or q4" : "f32");
        return NULL;
    }
    return t;
}

static const float *bind_vector(binder *b, int64_t n, const char *name) {
    const tensor *t = bind_tensor(b, false, n, 1, "%s", name);
    return t ? (const float *)t->data : NULL;
}

/* An f32 LoRA factor of a run-time adapter, [rows][cols]; rows < 0 means "any" (the rank). */
static const tensor *bind_lora_factor(binder *b, const char *name, int64_t rows, int64_t cols) {
    const tensor *t = wf_tensor(b->wf, name);
    if (!t) return NULL;
    if (t->dtype != DT_F32 || t->ndim != 2 || (rows >= 0 && t->shape[0] != rows) || t->shape[1] != cols ||
        t->shape[0] < 1 || t->shape[0] > MODEL_MAX_DIM) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "adapter tensor '%s' (%s, %d dims [%lld, %lld]) does not fit "
                         "its layer (expected f32 [%lld, %lld])", name, dtype_name(t->dtype), t->ndim,
                         (long long)t->shape[0], (long long)t->shape[1], (long long)(rows >= 0 ? rows : t->shape[0]),
                         (long long)cols);
        return NULL;
    }
    return t;
}

/* Binds `prefix`.weight [out][in] (+ .bias [out]) and, when the file has them, each run-time
 * adapter's <slot prefix>`prefix`.lora_A [r][in] and .lora_B [out][r] (query_adapter.*, task_adapter.NAME.*). */
static void bind_linear(binder *b, linear_layer *l, const char *prefix, int64_t out, int64_t in, bool has_bias,
                        int *max_rank, int *max_width) {
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->weight = bind_tensor(b, true, out, in, "%s.weight", prefix);
    if (has_bias) l->bias = bind_tensor(b, false, out, 1, "%s.bias", prefix);
    for (int slot = 0; slot < MODEL_MAX_ADAPTERS && b->status == ABC_OK; slot++) {
        const char *slot_prefix = b->m->adapter_prefix[slot];
        if (!slot_prefix) continue;
        char name_a[512], name_b[512];
        snprintf(name_a, sizeof name_a, "%s%s.lora_A", slot_prefix, prefix);
        snprintf(name_b, sizeof name_b, "%s%s.lora_B", slot_prefix, prefix);
        const tensor *a = bind_lora_factor(b, name_a, -1, in);
        if (b->status != ABC_OK) return;
        const tensor *bt = a ? bind_lora_factor(b, name_b, out, a->shape[0]) : NULL;
        if (b->status != ABC_OK) return;
        if (!a != !bt || (!a && wf_tensor(b->wf, name_b))) {
            b->status = fail(b->err, ABC_ERR_FORMAT, "adapter %s of '%s' needs both lora_A and lora_B", slot_prefix,
                             prefix);
            return;
        }
        if (!a) continue;
        lora_factors *f = &l->lora[slot];
        f->a = a->data;
        f->b = bt->data;
        f->rank = (int)a->shape[0];
        *max_rank = MAX(*max_rank, f->rank);
        *max_width = (int)MAX(*max_width, out);
        b->claimed[a - b->wf->tensors] = b->claimed[bt - b->wf->tensors] = true;
        b->adapter_modules++;
        b->slot_modules[slot]++;
    }
}

static abc_status bind_text(binder *b, const text_config *c, bool qkv_bias, text_weights *w) {
    const int64_t H = c->hidden, I = c->intermediate, Q = (int64_t)c->n_heads * c->head_dim,
                  KV = (int64_t)c->n_kv_heads * c->head_dim;
    char p[128];
    w->layers = xcalloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the language model");
    w->embed_tokens = bind_tensor(b, true, c->vocab, H, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers && b->status == ABC_OK; i++) {
        text_layer *l = &w->layers[i];
#define TNAME(s) (snprintf(p, sizeof p, "model.layers.%d.%s", i, s), p)
        l->input_norm = bind_vector(b, H, TNAME("input_layernorm.weight"));
        l->post_attn_norm = bind_vector(b, H, TNAME("post_attention_layernorm.weight"));
        bind_linear(b, &l->q, TNAME("self_attn.q_proj"), Q, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->k, TNAME("self_attn.k_proj"), KV, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->v, TNAME("self_attn.v_proj"), KV, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->o, TNAME("self_attn.o_proj"), H, Q, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->gate, TNAME("mlp.gate_proj"), I, H, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->up, TNAME("mlp.up_proj"), I, H, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->down, TNAME("mlp.down_proj"), H, I, false, &w->adapter_rank, &w->adapter_width);
#undef TNAME
    }
    w->final_norm = bind_vector(b, H, "model.norm.weight");
    return b->status;
}

static abc_status bind_multi_vector(binder *b, int64_t H, multi_vector_head *mv) {
    bind_linear(b, &mv->proj, "multi_vector.proj", mv->dim, H, true, &mv->adapter_rank, &mv->adapter_width);
    return b->status;
}

static abc_status bind_head(binder *b, int64_t H, mlp_head *head) {
    const tensor *w1 = wf_tensor(b->wf, "mlp_head.linear_layer1.weight");
    const int64_t D = w1 && w1->ndim == 2 ? w1->shape[0] : 0;
    if (w1 && (D < 1 || D > MODEL_MAX_DIM))
        return fail(b->err, ABC_ERR_FORMAT, "tensor 'mlp_head.linear_layer1.weight' has a bad shape");
    head->inner = D;
    head->w1 = bind_tensor(b, true, D, H, "mlp_head.linear_layer1.weight");
    head->b1 = bind_tensor(b, false, D, 1, "mlp_head.linear_layer1.bias");
    head->w2 = bind_tensor(b, true, H, D, "mlp_head.linear_layer2.weight");
    head->b2 = bind_tensor(b, false, H, 1, "mlp_head.linear_layer2.bias");
    return b->status;
}

static bool has_prefix(const tensor *t, const char *prefix) {
    const size_t n = strlen(prefix);
    return t->name_len >= n && memcmp(t->name, prefix, n) == 0;
}

/* Every query_adapter.* / task_adapter.* tensor must belong to a layer, and the metadata must agree. */
static abc_status check_adapter_complete(binder *b, abc_model *m) {
    const weight_file *wf = &m->wf;
    uint32_t total = 0;
    for (uint32_t i = 0; i < wf->n_tensors; i++) {
        const tensor *t = &wf->tensors[i];
        const bool query = has_prefix(t, "query_adapter.");
        if (!query && !has_prefix(t, "task_adapter.")) continue;
        total += query;
        if (!b->claimed[i])
            return fail(b->err, ABC_ERR_FORMAT, "adapter tensor '%.*s' belongs to no layer of the model",
                        (int)MIN(t->name_len, 200), t->name);
    }
    for (int slot = 1; slot < MODEL_MAX_ADAPTERS; slot++)
        if (m->adapter_prefix[slot] && !b->slot_modules[slot])
            return fail(b->err, ABC_ERR_FORMAT, "task adapter '%s' has no tensors", m->task_names[slot - 1]);
    int64_t rank = 0;
    if (wf_meta(wf, "query_adapter.rank") &&
        !meta_int_in(wf, "query_adapter.rank", 0, MODEL_MAX_DIM, &rank, b->err))
        return b->err ? b->err->code : ABC_ERR_FORMAT;
    if (total > 0 && m->n_tasks > 0)
        return fail(b->err, ABC_ERR_FORMAT, "a file has a query adapter or task adapters, not both");
    if ((rank > 0) != (total > 0))
        return fail(b->err, ABC_ERR_FORMAT, "metadata 'query_adapter.rank' = %lld but the file has %u adapter tensors",
                    (long long)rank, total);
    const int largest = MAX(MAX(m->text_w.adapter_rank, m->vision_adapter_rank), m->multi.adapter_rank);
    if (total > 0 && rank != largest)
        return fail(b->err, ABC_ERR_FORMAT, "metadata 'query_adapter.rank' = %lld but the largest adapter rank is %d",
                    (long long)rank, largest);
    return ABC_OK;
}

static abc_status bind_weights(abc_model *m, abc_error *err) {
    binder b = {&m->wf, err, ABC_OK, NULL, 0, m, {0}};
    b.claimed = xcalloc(m->wf.n_tensors, sizeof *b.claimed);
    if (!b.claimed) return fail(err, ABC_ERR_NOMEM, "out of memory binding tensors");
    abc_status st = m->family->bind(&b, m);
    if (st == ABC_OK) st = bind_text(&b, &m->text, m->family->text_qkv_bias, &m->text_w);
    if (st == ABC_OK && m->has_head) st = bind_head(&b, m->text.hidden, &m->head);
    if (st == ABC_OK && m->multi.dim) st = bind_multi_vector(&b, m->text.hidden, &m->multi);
    if (st == ABC_OK) st = check_adapter_complete(&b, m);
    m->adapter_modules = b.adapter_modules;
    free(b.claimed);
    return st;
}

/* ---- the pipeline after tokenization ---- */

/* Hands a stage's array to the callback; a non-zero answer stops the pipeline. */
static abc_status emit_stage(abc_context *ctx, const char *name, abc_array_dtype dtype, int ndim,
                             const int64_t *shape, const void *data) {
    if (!ctx->on_stage) return ABC_OK;
    /* the caller's code allocates as it always does (what it gets from the library, e.g. from another
     * context's abc_embed or abc_image_decode, must outlive this call), not from this call's arena */
    mem_arena *arena = active_arena;
    active_arena = NULL;
    const int stop = ctx->on_stage(ctx->on_stage_user, name, dtype, ndim, shape, data);
    active_arena = arena;
    if (stop != 0) return fail(&ctx->err, ABC_ERR_STOPPED, "stopped by the stage callback after '%s'", name);
    return ABC_OK;
}

/* Checks ids, image and grid against the model before any work. */
static abc_status check_tokens_and_image(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixels,
                                         size_t n_patches, const int grid[3]) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (n_ids == 0) return fail(err, ABC_ERR_INVALID_ARG, "the prompt has no tokens");
    if (n_ids > (size_t)m->params.max_tokens)
        return fail(err, ABC_ERR_TOO_LARGE, "the sequence has %zu tokens, more than the limit of %d", n_ids,
                    m->params.max_tokens);
    size_t n_image_tokens = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (is_visual_token(&m->text, ids[i])) { /* a family may mark image tokens outside the vocabulary (-1) */
            n_image_tokens++;
            if (ids[i] < 0) continue;
        }
        if (ids[i] < 0 || ids[i] >= m->text.vocab)
            return fail(err, ABC_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary (0..%lld)",
                        (int)ids[i], i, (long long)m->text.vocab - 1);
    }
    return m->family->check_image(ctx, n_image_tokens, pixels, n_patches, grid);
}

/* Pooling, head and normalisation of last_hidden [L][H] into out [D]. */
static abc_status pool_and_head(abc_context *ctx, const int32_t *ids, int64_t L, const float *hidden, float *out) {
    const abc_model *m = ctx->model;
    const int H = m->text.hidden;
    float *pooled = xmalloc((size_t)H * sizeof *pooled);
    double *acc = xmalloc((size_t)H * sizeof *acc);
    float *inner = xmalloc((size_t)(m->has_head ? m->head.inner : 1) * sizeof *inner);
    if (!pooled || !acc || !inner) {
        free(pooled);
        free(acc);
        free(inner);
        return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for pooling");
    }
    if (m->pooling == POOL_LAST) pool_last(hidden, L, H, pooled);
    else if (m->pooling == POOL_MEAN_VISION_SPAN)
        pool_mean_vision_span(hidden, ids, L, H, m->text.vision_start_token, m->text.vision_end_token, pooled);
    else pool_mean_nonzero(hidden, ids, L, H, acc, pooled);
    if (m->has_head) mlp_head_forward(ctx->pool, &m->head, pooled, H, inner, out);
    else memcpy(out, pooled, (size_t)H * sizeof *out);
    if (m->normalize) l2_normalize(out, m->embedding_dim);
    free(pooled);
    free(acc);
    free(inner);
    return ABC_OK;
}

/* ids (image tokens already expanded) + pixel values → embedding, emitting every model stage. With
 * `multi`, out receives the per-token vectors [n_ids][multi.dim] instead (room checked by the caller). */
static abc_status run_model(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixels,
                            size_t n_patches, const int grid[3], int adapter, bool multi, float *out) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    abc_status st = check_tokens_and_image(ctx, ids, n_ids, pixels, n_patches, grid);
    if (st != ABC_OK) return st;
    const int64_t L = (int64_t)n_ids, H = m->text.hidden, D = m->embedding_dim;
    int64_t n_image_rows = 0;
    int32_t *pos = NULL;
    float *image = NULL, *hidden = NULL, *embedding = NULL;
    size_t n_hidden;

    int64_t shape[2] = {L, H};
    st = emit_stage(ctx, ABC_STAGE_INPUT_IDS, ABC_DTYPE_I32, 1, shape, ids);
    if (st == ABC_OK && !(pos = xmalloc(3 * (size_t)L * sizeof *pos)))
        st = fail(err, ABC_ERR_NOMEM, "out of memory for position ids");
    if (st == ABC_OK) st = m->family->position_ids(ctx, ids, L, pixels, grid, pos);
    if (st == ABC_OK && pixels) st = m->family->encode_image(ctx, pixels, n_patches, grid, adapter, &image, &n_image_rows);
    if (st != ABC_OK) goto done;

    if (!mul_size((size_t)L, (size_t)H * sizeof(float), &n_hidden) || !(hidden = xmalloc_aligned(n_hidden))) {
        st = fail(err, ABC_ERR_NOMEM, "out of memory for the hidden states of %lld tokens", (long long)L);
        goto done;
    }
    language_embed_inputs(&m->text, &m->text_w, ids, L, image, n_image_rows, hidden);
    if (family_emits(m->family, ABC_STAGE_INPUTS_EMBEDS))
        st = emit_stage(ctx, ABC_STAGE_INPUTS_EMBEDS, ABC_DTYPE_F32, 2, shape, hidden);
    const int64_t span[2] = {0, L};
    const sequence_spans spans = {span, 1};
    if (st == ABC_OK) st = language_decode(ctx->pool, &m->text, &m->text_w, &spans, pos, adapter, &ctx->ws, hidden, err);
    if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_LAST_HIDDEN, ABC_DTYPE_F32, 2, shape, hidden);
    if (st != ABC_OK) goto done;

    if (multi) { /* every token is kept: one unpadded sequence has an attention mask of ones */
        const size_t n_out = (size_t)L * (size_t)m->multi.dim;
        if (!(embedding = xmalloc(n_out * sizeof *embedding))) {
            st = fail(err, ABC_ERR_NOMEM, "out of memory for %lld token vectors", (long long)L);
            goto done;
        }
        st = multi_vector_forward(ctx->pool, &m->multi, hidden, L, adapter, embedding, err);
        shape[1] = m->multi.dim;
        if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_MULTI_VECTOR, ABC_DTYPE_F32, 2, shape, embedding);
        if (st == ABC_OK) memcpy(out, embedding, n_out * sizeof *out);
        goto done;
    }
    embedding = xmalloc((size_t)D * sizeof *embedding);
    if (!embedding) {
        st = fail(err, ABC_ERR_NOMEM, "out of memory for the embedding");
        goto done;
    }
    st = pool_and_head(ctx, ids, L, hidden, embedding);
    if (st != ABC_OK) goto done;
    shape[0] = D;
    st = emit_stage(ctx, ABC_STAGE_EMBEDDING, ABC_DTYPE_F32, 1, shape, embedding);
    if (st != ABC_OK) goto done;
    memcpy(out, embedding, (size_t)D * sizeof *out);
done:
    free(pos);
    free(image);
    free(hidden);
    free(embedding);
    return st;
}

/* ---- prompts and images ---- */

/* A copy of `template` with every "{text}" replaced by `text` and every "{instruction}" by
 * `instruction`, in one pass (a value is never scanned for keys). */
static char *fill_template(const char *template, const char *text, const char *instruction) {
    static const char *const keys[2] = {"{text}", "{instruction}"};
    const char *values[2] = {text, instruction};
    size_t key_len[2], value_len[2];
    for (int k = 0; k < 2; k++) key_len[k] = strlen(keys[k]), value_len[k] = strlen(values[k]);
    /* two passes: the first measures, the second writes */
    char *out = NULL;
    size_t size = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0;
        for (const char *p = template; *p;) {
            int k = 0;
            while (k < 2 && strncmp(p, keys[k], key_len[k]) != 0) k++;
            const size_t len = k < 2 ? value_len[k] : 1;
            if (len > SIZE_MAX - 1 - n) return NULL;
            if (out) memcpy(out + n, k < 2 ? values[k] : p, len);
            n += len;
            p += k < 2 ? key_len[k] : 1;
        }
        if (out) {
            out[n] = 0;
            break;
        }
        size = n + 1;
        if (!(out = xmalloc(size))) return NULL;
    }
    return out;
}

/* The prompt for an input: the raw prompt; or the text itself when it already holds the image
 * placeholder (VLM2Vec users write "<|image_pad|> ..." themselves); or the model's template for the
 * inputs present. A candidate keeps the model's default instruction, as GME's script does. */
/* candidate_prompt: the text takes prompt.text_candidate where the file has one (jina-v4 "Passage: "). */
static char *build_prompt(const abc_model *m, const abc_input *in, bool has_image, bool candidate_prompt) {
    const char *src = NULL;
    const bool video = in->n_frames > 0;
    if (in->prompt) src = in->prompt;
    else if (in->text && strstr(in->text, video ? m->video_placeholder : m->placeholder)) src = in->text;
    if (src) {
        size_t n = strlen(src);
        char *copy = xmalloc(n + 1);
        if (copy) memcpy(copy, src, n + 1);
        return copy;
    }
    const char *template = video ? (in->text ? m->prompt_video_text : m->prompt_video)
                           : has_image ? (in->text ? m->prompt_image_text : m->prompt_image)
                           : candidate_prompt && m->prompt_text_candidate ? m->prompt_text_candidate
                                                                          : m->prompt_text;
    const char *instruction = in->instruction && in->role != ABC_ROLE_CANDIDATE ? in->instruction : m->prompt_instruction;
    return fill_template(template, in->text ? in->text : "", instruction ? instruction : "");
}

/* Replaces every image placeholder token by `per_image` image tokens. */
static abc_status expand_image_tokens(abc_context *ctx, const int_vec *raw, int64_t per_image, int_vec *out) {
    const abc_model *m = ctx->model;
    size_t n_placeholders = 0;
    for (size_t i = 0; i < raw->len; i++) n_placeholders += is_visual_token(&m->text, raw->data[i]);
    const uint64_t total = (uint64_t)(raw->len - n_placeholders) + (uint64_t)n_placeholders * (uint64_t)per_image;
    if (total > (uint64_t)m->params.max_tokens)
        return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence would have %llu tokens, more than the limit of %d",
                    (unsigned long long)total, m->params.max_tokens);
    for (size_t i = 0; i < raw->len; i++) {
        int64_t copies = is_visual_token(&m->text, raw->data[i]) ? per_image : 1;
        for (int64_t k = 0; k < copies; k++)
            if (!int_vec_push(out, raw->data[i]))
                return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
    }
    return ABC_OK;
}

static abc_status load_input_image(abc_context *ctx, const abc_input *in, abc_image *img) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    const size_t max_pixels = m->params.max_image_pixels;
    if (in->image_path) return image_load_budget(in->image_path, max_pixels, m->params.max_decode_ratio, img, err);
    if (in->image_data)
        return image_decode_budget(in->image_data, in->image_size, max_pixels, m->params.max_decode_ratio, img, err);
    /* a caller's RGB buffer, possibly with padded rows: copy it packed */
    if (in->rgb_width <= 0 || in->rgb_height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "RGB image size %dx%d is not positive", in->rgb_width, in->rgb_height);
    const size_t row = (size_t)in->rgb_width * 3, stride = in->rgb_stride ? in->rgb_stride : row;
    if (stride < row)
        return fail(err, ABC_ERR_INVALID_ARG, "RGB row stride %zu is less than width·3 = %zu", stride, row);
    if ((uint64_t)in->rgb_width * (uint64_t)in->rgb_height > (uint64_t)max_pixels)
        return fail(err, ABC_ERR_TOO_LARGE, "a %dx%d image exceeds the limit of %zu pixels", in->rgb_width,
                    in->rgb_height, max_pixels);
    size_t n;
    if (!mul_size(row, (size_t)in->rgb_height, &n) || !(img->rgb = xmalloc(n)))
        return fail(err, ABC_ERR_NOMEM, "out of memory copying a %dx%d image", in->rgb_width, in->rgb_height);
    for (int y = 0; y < in->rgb_height; y++) memcpy(img->rgb + (size_t)y * row, in->rgb + (size_t)y * stride, row);
    img->width = in->rgb_width;
    img->height = in->rgb_height;
    return ABC_OK;
}

/* ================================================================================================
 * 11b. Family qwen2_vl (ABC, VLM2Vec-Qwen2VL): the ViT + merger image side, smart_resize preprocessing,
 * multimodal (M-RoPE) position ids, <|image_pad|> expanded to one token per merged patch
 * ================================================================================================ */

typedef struct {
    vision_config vision;
    vision_weights vision_w;
    preprocess_config preprocess;
    /* video frames: each resized like an image whose first (qwen_vl_utils) stage has these bounds;
     * 0 = the file has no video support */
    int64_t video_min_pixels, video_max_pixels;
} qwen2vl_data;

static const qwen2vl_data *qwen2vl_of(const abc_model *m) { return m->family_data; }

static abc_status read_vision_config(const weight_file *wf, vision_config *c, int text_hidden,
                                     abc_error *err) {
    int patch, temporal, channels;
    double eps;
    if (!meta_dim(wf, "vision.depth", VISION_MAX_DEPTH, &c->depth, err) ||
        !meta_dim(wf, "vision.embed_dim", MODEL_MAX_DIM, &c->embed_dim, err) ||
        !meta_dim(wf, "vision.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_dim(wf, "vision.mlp_dim", MODEL_MAX_DIM, &c->mlp_dim, err) ||
        !meta_dim(wf, "vision.patch_size", 1024, &patch, err) ||
        !meta_dim(wf, "vision.temporal_patch_size", 64, &temporal, err) ||
        !meta_dim(wf, "vision.spatial_merge_size", 64, &c->merge_size, err) ||
        !meta_dim(wf, "vision.in_channels", 64, &channels, err) ||
        !meta_dim(wf, "vision.out_dim", MODEL_MAX_DIM, &c->out_dim, err) ||
        !meta_positive(wf, "vision.layer_norm_eps", 1.0, &eps, err) ||
        !meta_positive(wf, "vision.rope_theta", 1e30, &c->rope_theta, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->norm_eps = (float)eps;
    if (channels != 3)
        return fail(err, ABC_ERR_FORMAT, "vision.in_channels is %d; images are RGB (3)", channels);
    if ((int64_t)patch * patch * temporal * channels > MODEL_MAX_DIM)
        return fail(err, ABC_ERR_FORMAT, "vision patch %d×%d×%d is too large", patch, patch, temporal);
    c->patch_dim = channels * temporal * patch * patch;
    if (c->embed_dim % c->n_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "vision.embed_dim %d is not a multiple of vision.num_heads %d",
                    c->embed_dim, c->n_heads);
    c->head_dim = c->embed_dim / c->n_heads;
    if (c->head_dim % 4 != 0 || c->head_dim > MODEL_MAX_HEAD_DIM)
        return fail(err, ABC_ERR_FORMAT, "vision head_dim %d must be a multiple of 4 up to %d (2-D rotary)",
                    c->head_dim, MODEL_MAX_HEAD_DIM);
    if (c->out_dim != text_hidden)
        return fail(err, ABC_ERR_FORMAT, "vision.out_dim %d != text.hidden_size %d", c->out_dim, text_hidden);
    return ABC_OK;
}

static abc_status read_preprocess_config(const weight_file *wf, const vision_config *v, int patch,
                                         int temporal, preprocess_config *p, abc_error *err) {
    int64_t factor, lo, hi;
    double mean[3], std[3];
    if (!meta_int_in(wf, "image.factor", 1, 1 << 16, &factor, err) ||
        !meta_int_in(wf, "image.min_pixels", 1, INT64_C(1) << 40, &lo, err) ||
        !meta_int_in(wf, "image.max_pixels", 1, INT64_C(1) << 40, &hi, err) ||
        !wf_f64_array(wf, "image.mean", mean, 3, err) || !wf_f64_array(wf, "image.std", std, 3, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (factor != (int64_t)patch * v->merge_size)
        return fail(err, ABC_ERR_FORMAT, "image.factor %lld != patch size × merge size %d", (long long)factor,
                    patch * v->merge_size);
    if (lo > hi)
        return fail(err, ABC_ERR_FORMAT, "image.min_pixels %lld > image.max_pixels %lld", (long long)lo,
                    (long long)hi);
    memset(p, 0, sizeof *p);
    p->factor = (int)factor;
    p->min_pixels = lo;
    p->max_pixels = hi;
    for (int c = 0; c < 3; c++) {
        if (!isfinite(mean[c]) || !isfinite(std[c]) || !(fabs(std[c]) > 1e-12))
            return fail(err, ABC_ERR_FORMAT, "image.mean/image.std channel %d is not usable", c);
        p->mean[c] = (float)mean[c];
        p->std[c] = (float)std[c];
    }
    p->patch_size = patch;
    p->temporal_patch_size = temporal;
    p->merge_size = v->merge_size;
    const bool has_lo1 = wf_meta(wf, "image.stage1_min_pixels") != NULL;
    const bool has_hi1 = wf_meta(wf, "image.stage1_max_pixels") != NULL;
    if (has_lo1 != has_hi1)
        return fail(err, ABC_ERR_FORMAT, "image.stage1_min_pixels and image.stage1_max_pixels come together");
    if (has_lo1) {
        if (!meta_int_in(wf, "image.stage1_min_pixels", 1, INT64_C(1) << 40, &lo, err) ||
            !meta_int_in(wf, "image.stage1_max_pixels", 1, INT64_C(1) << 40, &hi, err))
            return err ? err->code : ABC_ERR_FORMAT;
        if (lo > hi)
            return fail(err, ABC_ERR_FORMAT, "image.stage1_min_pixels %lld > image.stage1_max_pixels %lld",
                        (long long)lo, (long long)hi);
        p->two_stage = true;
        p->stage1_min_pixels = lo;
        p->stage1_max_pixels = hi;
    }
    return ABC_OK;
}

/* text.mrope_section: how the rotary frequencies split between the time, height and width ids. */
static abc_status qwen2vl_read_mrope(const weight_file *wf, text_config *c, abc_error *err) {
    int64_t section[3];
    if (!wf_int_array(wf, "text.mrope_section", section, 3, err)) return err ? err->code : ABC_ERR_FORMAT;
    int64_t sum = 0;
    for (int k = 0; k < 3; k++) {
        if (section[k] < 0 || section[k] > c->head_dim)
            return fail(err, ABC_ERR_FORMAT, "metadata 'text.mrope_section' has a bad entry %lld",
                        (long long)section[k]);
        c->mrope_section[k] = (int)section[k];
        sum += section[k];
    }
    if (sum != c->head_dim / 2)
        return fail(err, ABC_ERR_FORMAT, "text.mrope_section sums to %lld, not head_dim/2 = %d", (long long)sum,
                    c->head_dim / 2);
    return ABC_OK;
}

/* The caller's min_pixels/max_pixels (abc_model_params) in place of the file's final-resize bounds. */
static abc_status qwen2vl_apply_pixel_budget(const abc_model_params *params, preprocess_config *p, abc_error *err) {
    const int64_t lo = params->min_pixels ? params->min_pixels : p->min_pixels;
    const int64_t hi = params->max_pixels ? params->max_pixels : p->max_pixels;
    const int64_t token = (int64_t)p->factor * p->factor;
    if ((params->min_pixels && lo < token) || (params->max_pixels && hi < token))
        return fail(err, ABC_ERR_INVALID_ARG, "min_pixels/max_pixels (%lld, %lld) must be at least one %dx%d token (%lld)",
                    (long long)params->min_pixels, (long long)params->max_pixels, p->factor, p->factor,
                    (long long)token);
    if (lo > hi)
        return fail(err, ABC_ERR_INVALID_ARG, "min_pixels %lld > max_pixels %lld (after applying the model's bounds)",
                    (long long)lo, (long long)hi);
    p->min_pixels = lo;
    p->max_pixels = hi;
    return ABC_OK;
}

static abc_status qwen2vl_read_config(abc_model *m, abc_error *err) {
    const weight_file *wf = &m->wf;
    qwen2vl_data *d = xcalloc(1, sizeof *d);
    if (!d) return fail(err, ABC_ERR_NOMEM, "out of memory reading the configuration");
    m->family_data = d;
    int64_t patch = 0, temporal = 0; /* both checked by read_vision_config */
    abc_status st = qwen2vl_read_mrope(wf, &m->text, err);
    if (st == ABC_OK) st = read_vision_config(wf, &d->vision, m->text.hidden, err);
    if (st != ABC_OK) return st;
    wf_int(wf, "vision.patch_size", &patch, NULL);
    wf_int(wf, "vision.temporal_patch_size", &temporal, NULL);
    st = read_preprocess_config(wf, &d->vision, (int)patch, (int)temporal, &d->preprocess, err);
    if (st == ABC_OK) st = qwen2vl_apply_pixel_budget(&m->params, &d->preprocess, err);
    if (st != ABC_OK) return st;
    m->text.merge_size = d->vision.merge_size;
    if (!meta_token_id(wf, "tokens.image_pad", m->text.vocab, &m->text.image_token, err) ||
        !meta_token_id(wf, "tokens.vision_start", m->text.vocab, &m->text.vision_start_token, err) ||
        !meta_token_id(wf, "tokens.vision_end", m->text.vocab, &m->text.vision_end_token, err))
        return err ? err->code : ABC_ERR_FORMAT;
    /* optional: video (VLM2Vec-V2), the token, the frame bounds and the prompts come together */
    m->text.video_token = -1;
    const bool video = wf_meta(wf, "tokens.video_pad") != NULL;
    if (video != (wf_meta(wf, "video.min_pixels") != NULL) || video != (wf_meta(wf, "video.max_pixels") != NULL) ||
        video != (m->prompt_video != NULL))
        return fail(err, ABC_ERR_FORMAT, "tokens.video_pad, video.min_pixels, video.max_pixels and the video prompts "
                    "come together");
    if (video && (!meta_token_id(wf, "tokens.video_pad", m->text.vocab, &m->text.video_token, err) ||
                  !meta_int_in(wf, "video.min_pixels", 1, INT64_C(1) << 40, &d->video_min_pixels, err) ||
                  !meta_int_in(wf, "video.max_pixels", 1, INT64_C(1) << 40, &d->video_max_pixels, err)))
        return err ? err->code : ABC_ERR_FORMAT;
    if (video && (d->video_min_pixels > d->video_max_pixels || m->text.video_token == m->text.image_token))
        return fail(err, ABC_ERR_FORMAT, "bad video metadata (min_pixels %lld, max_pixels %lld, token %d)",
                    (long long)d->video_min_pixels, (long long)d->video_max_pixels, (int)m->text.video_token);
    return ABC_OK;
}

static abc_status qwen2vl_bind(binder *b, abc_model *m) {
    qwen2vl_data *d = m->family_data;
    const vision_config *c = &d->vision;
    vision_weights *w = &d->vision_w;
    const int64_t E = c->embed_dim, M = c->mlp_dim, group_dim = E * c->merge_size * c->merge_size;
    char p[128];
    w->blocks = xcalloc((size_t)c->depth, sizeof *w->blocks);
    if (!w->blocks) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the vision tower");
    bind_linear(b, &w->patch_embed, "visual.patch_embed.proj", E, c->patch_dim, false, &w->adapter_rank,
                &w->adapter_width);
    /* Qwen2.5-VL: RMSNorm weights only (no biases), mlp.gate_proj/up_proj/down_proj with biases */
    const bool q25 = c->qwen25;
    for (int i = 0; i < c->depth && b->status == ABC_OK; i++) {
        vision_block *blk = &w->blocks[i];
#define VNAME(s) (snprintf(p, sizeof p, "visual.blocks.%d.%s", i, s), p)
        blk->norm1_w = bind_vector(b, E, VNAME("norm1.weight"));
        blk->norm1_b = q25 ? NULL : bind_vector(b, E, VNAME("norm1.bias"));
        blk->norm2_w = bind_vector(b, E, VNAME("norm2.weight"));
        blk->norm2_b = q25 ? NULL : bind_vector(b, E, VNAME("norm2.bias"));
        bind_linear(b, &blk->qkv, VNAME("attn.qkv"), 3 * E, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->proj, VNAME("attn.proj"), E, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->fc1, VNAME(q25 ? "mlp.gate_proj" : "mlp.fc1"), M, E, true, &w->adapter_rank,
                    &w->adapter_width);
        if (q25) bind_linear(b, &blk->up, VNAME("mlp.up_proj"), M, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->fc2, VNAME(q25 ? "mlp.down_proj" : "mlp.fc2"), E, M, true, &w->adapter_rank,
                    &w->adapter_width);
#undef VNAME
    }
    w->ln_q_w = bind_vector(b, E, "visual.merger.ln_q.weight");
    w->ln_q_b = q25 ? NULL : bind_vector(b, E, "visual.merger.ln_q.bias");
    bind_linear(b, &w->merger_fc1, "visual.merger.mlp.0", group_dim, group_dim, true, &w->adapter_rank,
                &w->adapter_width);
    bind_linear(b, &w->merger_fc2, "visual.merger.mlp.2", c->out_dim, group_dim, true, &w->adapter_rank,
                &w->adapter_width);
    m->vision_adapter_rank = w->adapter_rank;
    return b->status;
}

static void qwen2vl_free(void *family_data) {
    qwen2vl_data *d = family_data;
    if (d) free(d->vision_w.blocks);
    free(d);
}

static void qwen2vl_describe(const abc_model *m, char *out, size_t cap) {
    const vision_config *v = &qwen2vl_of(m)->vision;
    const text_config *t = &m->text;
    snprintf(out, cap,
             "architecture: %s (preset %s), weights %s\n"
             "vision: %d blocks, width %d, %d heads, mlp %d, patch %d, merge %dx%d\n"
             "language: %d layers, hidden %d, %d heads (%d kv), head_dim %d, intermediate %d, vocab %lld\n"
             "attention %s, pooling %s, head %s%s, embedding dim %d\n"
             "%s: %d layers, rank up to %d\n",
             m->family->architecture, m->preset, m->dtype ? m->dtype : "?", v->depth, v->embed_dim, v->n_heads, v->mlp_dim,
             qwen2vl_of(m)->preprocess.patch_size, v->merge_size, v->merge_size, t->n_layers, t->hidden, t->n_heads,
             t->n_kv_heads, t->head_dim, t->intermediate, (long long)t->vocab,
             t->causal ? "causal" : "bidirectional", pooling_name(m->pooling),
             m->has_head ? "mlp" : "none", m->normalize ? ", L2-normalized" : "", m->embedding_dim,
             m->n_tasks ? "task adapters (chosen per call)" : "query adapter (role=query)", m->adapter_modules,
             MAX(m->text_w.adapter_rank, m->vision_adapter_rank));
}

/* Image tokens in caller-prepared ids: a grid of whole merge groups holding n_patches. */
static abc_status qwen2vl_check_image(abc_context *ctx, size_t n_image_tokens, const float *pixels, size_t n_patches,
                                      const int grid[3]) {
    (void)n_image_tokens;
    abc_error *err = &ctx->err;
    if (!pixels) return ABC_OK;
    const int merge = qwen2vl_of(ctx->model)->vision.merge_size;
    if (grid[0] < 1 || grid[1] < 1 || grid[2] < 1 || grid[1] % merge || grid[2] % merge)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) is not positive multiples of the merge size %d",
                    grid[0], grid[1], grid[2], merge);
    if ((uint64_t)grid[0] * (uint64_t)grid[1] * (uint64_t)grid[2] != (uint64_t)n_patches)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) does not hold %zu patches", grid[0], grid[1],
                    grid[2], n_patches);
    return ABC_OK;
}

/* The multimodal [3][L] position ids (emitted as "position_ids" [3, L]). */
static abc_status qwen2vl_position_ids(abc_context *ctx, const int32_t *ids, int64_t L, const float *pixels,
                                       const int grid[3], int32_t *pos) {
    abc_status st = mrope_position_ids(&ctx->model->text, ids, L, pixels ? grid : NULL, pos, &ctx->err);
    const int64_t shape[2] = {3, L};
    return st != ABC_OK ? st : emit_stage(ctx, ABC_STAGE_POSITION_IDS, ABC_DTYPE_I32, 2, shape, pos);
}

/* The ViT + merger ("vision_embeds"). */
static abc_status qwen2vl_encode_image(abc_context *ctx, const float *pixels, size_t n_patches, const int grid[3],
                                       int adapter, float **image, int64_t *n_rows) {
    const abc_model *m = ctx->model;
    const qwen2vl_data *d = qwen2vl_of(m);
    const int64_t n_merged = (int64_t)n_patches / (d->vision.merge_size * d->vision.merge_size), H = m->text.hidden;
    size_t n_bytes;
    *n_rows = n_merged;
    if (!mul_size((size_t)n_merged, (size_t)H * sizeof(float), &n_bytes) || !(*image = xmalloc_aligned(n_bytes)))
        return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the image embeddings");
    abc_status st = vision_forward(ctx->pool, &d->vision, &d->vision_w, pixels, grid, adapter, &ctx->ws, *image, &ctx->err);
    int64_t shape[2] = {n_merged, H};
    if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_VISION_EMBEDS, ABC_DTYPE_F32, 2, shape, *image);
    return st;
}

/* Tokenizes the prompt and checks that it has an image placeholder exactly when there is an image. */
static abc_status tokenize_prompt(abc_context *ctx, const char *prompt, bool has_image, bool video, int_vec *ids) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    abc_status st = tokenizer_encode_max(m->tok, prompt, strlen(prompt), (size_t)m->params.max_tokens, ids, err);
    if (st != ABC_OK) return st;
    size_t n_image = 0, n_video = 0;
    for (size_t i = 0; i < ids->len; i++) {
        n_image += ids->data[i] == m->text.image_token;
        n_video += m->text.video_token >= 0 && ids->data[i] == m->text.video_token;
    }
    const char *want = video ? m->video_placeholder : m->placeholder;
    if (has_image && (video ? n_video : n_image) == 0)
        return fail(err, ABC_ERR_PROMPT, "%s was given but the prompt has no %s for it", video ? "a video" : "an image",
                    want);
    if ((!has_image || !video) && n_video > 0)
        return fail(err, ABC_ERR_PROMPT, "the prompt has %s but no video was given", m->video_placeholder);
    if ((!has_image || video) && n_image > 0)
        return fail(err, ABC_ERR_PROMPT, "the prompt has %s but no image was given", m->placeholder);
    return ABC_OK;
}

/* Decodes (emitting "decoded"), resizes ("resized") and patches ("pixel_values") the input image. */
static abc_status prepare_image(abc_context *ctx, const abc_input *in, float **pixels, int64_t *n_patches,
                                int grid[3]) {
    abc_image decoded = {0}, resized = {0};
    abc_status st = load_input_image(ctx, in, &decoded);
    if (st != ABC_OK) return st;
    int64_t shape[3] = {decoded.height, decoded.width, 3};
    st = emit_stage(ctx, ABC_STAGE_DECODED, ABC_DTYPE_U8, 3, shape, decoded.rgb);
    if (st == ABC_OK)
        st = preprocess_image(&decoded, &qwen2vl_of(ctx->model)->preprocess, &resized, pixels, n_patches, grid, &ctx->err);
    free(decoded.rgb);
    if (st != ABC_OK) return st;
    shape[0] = resized.height;
    shape[1] = resized.width;
    st = emit_stage(ctx, ABC_STAGE_RESIZED, ABC_DTYPE_U8, 3, shape, resized.rgb);
    free(resized.rgb);
    if (st == ABC_OK) {
        shape[0] = *n_patches;
        shape[1] = qwen2vl_of(ctx->model)->vision.patch_dim;
        st = emit_stage(ctx, ABC_STAGE_PIXEL_VALUES, ABC_DTYPE_F32, 2, shape, *pixels);
    }
    if (st != ABC_OK) {
        free(*pixels);
        *pixels = NULL;
    }
    return st;
}

/* Video frames → pixel_values of grid (pairs, h, w): every frame resized like an image whose first
 * stage has the video bounds (qwen_vl_utils' frame-list path, then the processor's resize), then frame
 * 2k and 2k+1 side by side in each patch's temporal slots; an odd count repeats the last frame.
 * Emits "resized" (the first frame) and "pixel_values". */
static abc_status prepare_video(abc_context *ctx, const abc_input *in, float **pixels, int64_t *n_patches,
                                int grid[3]) {
    const qwen2vl_data *d = qwen2vl_of(ctx->model);
    abc_error *err = &ctx->err;
    preprocess_config cfg = d->preprocess;
    cfg.two_stage = true;
    cfg.stage1_min_pixels = d->video_min_pixels;
    cfg.stage1_max_pixels = d->video_max_pixels;
    const int T = cfg.temporal_patch_size, n_frames = in->n_frames, n_steps = (n_frames + T - 1) / T;
    const size_t frame_len = (size_t)cfg.patch_size * cfg.patch_size, patch_len = 3 * (size_t)T * frame_len;
    float *frame_pv = NULL, *pv = NULL;
    abc_image first = {0};
    int64_t per_frame = 0;
    int frame_grid[3] = {0, 0, 0};
    abc_status st = ABC_OK;
    *pixels = NULL;
    for (int f = 0; f < n_frames && st == ABC_OK; f++) {
        const abc_image *src = &in->frames[f];
        if (!src->rgb || src->width <= 0 || src->height <= 0) {
            st = fail(err, ABC_ERR_INVALID_ARG, "video frame %d is empty (%dx%d)", f, src->width, src->height);
            break;
        }
        if ((uint64_t)src->width * (uint64_t)src->height > (uint64_t)ctx->model->params.max_image_pixels) {
            st = fail(err, ABC_ERR_TOO_LARGE, "video frame %d (%dx%d) exceeds the image pixel limit", f, src->width,
                      src->height);
            break;
        }
        abc_image resized = {0};
        int g[3];
        int64_t n;
        st = preprocess_image(src, &cfg, &resized, &frame_pv, &n, g, err);
        if (st != ABC_OK) break;
        if (f == 0) {
            per_frame = n;
            memcpy(frame_grid, g, sizeof g);
            first = resized;
            size_t n_floats, n_bytes;
            if ((uint64_t)per_frame * (uint64_t)n_steps > (uint64_t)INT32_MAX ||
                !mul_size((size_t)per_frame * (size_t)n_steps, patch_len, &n_floats) ||
                !mul_size(n_floats, sizeof(float), &n_bytes) || !(pv = xmalloc_aligned(n_bytes)))
                st = fail(err, ABC_ERR_NOMEM, "out of memory for %d video frames", n_frames);
        } else {
            free(resized.rgb);
            if (g[1] != frame_grid[1] || g[2] != frame_grid[2])
                st = fail(err, ABC_ERR_INVALID_ARG, "video frame %d resizes to %dx%d, frame 0 to %dx%d: frames must "
                          "share one size", f, g[2] * cfg.patch_size, g[1] * cfg.patch_size,
                          frame_grid[2] * cfg.patch_size, frame_grid[1] * cfg.patch_size);
        }
        /* this frame fills temporal slot f % T of its step (and every later slot when it is the last) */
        for (int slot = f % T; st == ABC_OK && slot < (f == n_frames - 1 ? T : f % T + 1); slot++) {
            float *step = pv + (size_t)(f / T) * (size_t)per_frame * patch_len;
            for (int64_t p = 0; p < per_frame; p++)
                for (int c = 0; c < 3; c++)
                    memcpy(step + (size_t)p * patch_len + ((size_t)c * T + slot) * frame_len,
                           frame_pv + (size_t)p * patch_len + (size_t)c * T * frame_len, frame_len * sizeof(float));
        }
        free(frame_pv);
        frame_pv = NULL;
    }
    if (st == ABC_OK) {
        int64_t shape[3] = {first.height, first.width, 3};
        st = emit_stage(ctx, ABC_STAGE_RESIZED, ABC_DTYPE_U8, 3, shape, first.rgb);
        *n_patches = per_frame * n_steps;
        grid[0] = n_steps;
        grid[1] = frame_grid[1];
        grid[2] = frame_grid[2];
        shape[0] = *n_patches;
        shape[1] = d->vision.patch_dim;
        if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_PIXEL_VALUES, ABC_DTYPE_F32, 2, shape, pv);
    }
    free(first.rgb);
    if (st != ABC_OK) free(pv);
    else *pixels = pv;
    return st;
}

static abc_status qwen2vl_prepare(abc_context *ctx, const abc_input *in, const char *prompt, bool has_image,
                                  int adapter, model_sequence *seq) {
    const abc_model *m = ctx->model;
    int_vec raw = {0};
    const bool video = in->n_frames > 0;
    /* prompt errors come before any image work */
    abc_status st = tokenize_prompt(ctx, prompt, has_image, video, &raw);
    int64_t n_patches = 0;
    if (st == ABC_OK && has_image)
        st = video ? prepare_video(ctx, in, &seq->pixels, &n_patches, seq->grid)
                   : prepare_image(ctx, in, &seq->pixels, &n_patches, seq->grid);
    if (st == ABC_OK) {
        const int group = qwen2vl_of(m)->vision.merge_size * qwen2vl_of(m)->vision.merge_size;
        st = expand_image_tokens(ctx, &raw, has_image ? n_patches / group : 1, &seq->ids);
    }
    seq->n_patches = (size_t)n_patches;
    seq->adapter = adapter;
    int_vec_free(&raw);
    return st;
}

static const char *const qwen2vl_stages[] = {
    ABC_STAGE_DECODED,    ABC_STAGE_RESIZED,       ABC_STAGE_PIXEL_VALUES, ABC_STAGE_INPUT_IDS,
    ABC_STAGE_POSITION_IDS, ABC_STAGE_VISION_EMBEDS, ABC_STAGE_LAST_HIDDEN, ABC_STAGE_EMBEDDING, NULL};

static const model_family family_qwen2vl = {
    .architecture = "qwen2_vl",
    .stages = qwen2vl_stages,
    .query_adapter = true,
    .text_qkv_bias = true,
    .read_config = qwen2vl_read_config,
    .bind = qwen2vl_bind,
    .free_data = qwen2vl_free,
    .describe = qwen2vl_describe,
    .prepare = qwen2vl_prepare,
    .check_image = qwen2vl_check_image,
    .position_ids = qwen2vl_position_ids,
    .encode_image = qwen2vl_encode_image,
};

/* ---- Qwen2.5-VL (qwen2_5_vl): the same pipeline, its own ViT (section 8's qwen25 variant) ---- */

/* vision.window_size (pixels) and vision.fullatt_blocks on top of the Qwen2-VL metadata. */
static abc_status qwen25vl_read_config(abc_model *m, abc_error *err) {
    abc_status st = qwen2vl_read_config(m, err);
    if (st != ABC_OK) return st;
    vision_config *c = &((qwen2vl_data *)m->family_data)->vision;
    const weight_file *wf = &m->wf;
    const int64_t patch = ((qwen2vl_data *)m->family_data)->preprocess.patch_size; /* checked by qwen2vl_read_config */
    int64_t window, full[VISION_MAX_DEPTH];
    const meta_entry *fe = wf_meta(wf, "vision.fullatt_blocks");
    if (!meta_int_in(wf, "vision.window_size", 1, 1 << 20, &window, err)) return err ? err->code : ABC_ERR_FORMAT;
    if (!fe || fe->count > VISION_MAX_DEPTH || !wf_int_array(wf, "vision.fullatt_blocks", full, (size_t)fe->count, err))
        return fail(err, ABC_ERR_FORMAT, "metadata 'vision.fullatt_blocks' is missing or too long");
    c->qwen25 = true;
    /* transformers: window_size // spatial_merge_size // patch_size merged groups a side */
    c->window_merged = (int)(window / c->merge_size / patch);
    if (c->window_merged < 1)
        return fail(err, ABC_ERR_FORMAT, "vision.window_size %lld is smaller than one merged group (%lld pixels)",
                    (long long)window, (long long)(c->merge_size * patch));
    for (size_t i = 0; i < (size_t)fe->count; i++) {
        if (full[i] < 0 || full[i] >= c->depth)
            return fail(err, ABC_ERR_FORMAT, "vision.fullatt_blocks[%zu] = %lld is not a block (depth %d)", i,
                        (long long)full[i], c->depth);
        c->full_attention[full[i]] = true;
    }
    return ABC_OK;
}

static const model_family family_qwen25vl = {
    .architecture = "qwen2_5_vl",
    .stages = qwen2vl_stages,
    .query_adapter = false,
    .text_qkv_bias = true,
    .read_config = qwen25vl_read_config,
    .bind = qwen2vl_bind,
    .free_data = qwen2vl_free,
    .describe = qwen2vl_describe,
    .prepare = qwen2vl_prepare,
    .check_image = qwen2vl_check_image,
    .position_ids = qwen2vl_position_ids,
    .encode_image = qwen2vl_encode_image,
};

/* ================================================================================================
 * 11c. Family phi3_v (Phi-3.5-V, VLM2Vec-Full): the CLIP image side with the HD transform and its
 * token layout, 1-D positions with su/longrope factors, <s> before every text chunk
 * ================================================================================================ */

typedef struct {
    clip_config clip;
    clip_weights clip_w;
    hd_preprocess_config hd;
    int32_t bos_token;    /* <s> before every text chunk */
    float *rope_factors;  /* su scaling: short then long factors, head_dim/2 each */
} phi3v_data;

static const phi3v_data *phi3v_of(const abc_model *m) { return m->family_data; }

/* Phi-3's RoPE: 1-D positions (all frequencies on component 0) and optional su/longrope factors,
 * stored in *factors (allocated here, short then long). */
static abc_status read_phi3_rope(const weight_file *wf, text_config *c, float **factors, abc_error *err) {
    static const char *const kinds[] = {"none", "su", "longrope"}; /* longrope: the same scheme renamed */
    const int half = c->head_dim / 2;
    int kind = 0;
    c->mrope_section[0] = half;
    c->mrope_section[1] = c->mrope_section[2] = 0;
    if (wf_meta(wf, "text.rope_scaling") && !meta_choice(wf, "text.rope_scaling", kinds, 3, &kind, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (kind == 0) return ABC_OK;
    int64_t original, longest;
    if (!meta_int_in(wf, "text.original_max_position_embeddings", 1, INT64_C(1) << 40, &original, err) ||
        !meta_int_in(wf, "text.max_position_embeddings", 1, INT64_C(1) << 40, &longest, err))
        return err ? err->code : ABC_ERR_FORMAT;
    double *values = xmalloc(2 * (size_t)half * sizeof *values);
    *factors = xmalloc(2 * (size_t)half * sizeof **factors);
    if (!values || !*factors) {
        free(values);
        return fail(err, ABC_ERR_NOMEM, "out of memory reading the rope factors");
    }
    abc_status st = ABC_OK;
    if (!wf_f64_array(wf, "text.rope_short_factor", values, (size_t)half, err) ||
        !wf_f64_array(wf, "text.rope_long_factor", values + half, (size_t)half, err))
        st = err ? err->code : ABC_ERR_FORMAT;
    for (int j = 0; j < 2 * half && st == ABC_OK; j++) {
        if (!(values[j] > 0.0 && values[j] < 1e30))
            st = fail(err, ABC_ERR_FORMAT, "metadata 'text.rope_%s_factor' entry %d = %g is not a positive number",
                      j < half ? "short" : "long", j % half, values[j]);
        (*factors)[j] = (float)values[j];
    }
    free(values);
    if (st != ABC_OK) return st;
    c->rope_short_factor = *factors;
    c->rope_long_factor = *factors + half;
    c->rope_original_max_positions = original;
    c->rope_max_positions = longest;
    return ABC_OK;
}

/* Phi-3.5-V's CLIP tower and HD transform. */
static abc_status read_clip_config(const weight_file *wf, clip_config *c, hd_preprocess_config *hd, int text_hidden,
                                   int num_crops_override, abc_error *err) {
    int64_t layers, crops, view_tokens;
    double eps, mean[3], std[3];
    if (!meta_dim(wf, "clip.hidden_size", MODEL_MAX_DIM, &c->hidden, err) ||
        !meta_dim(wf, "clip.intermediate_size", MODEL_MAX_DIM, &c->intermediate, err) ||
        !meta_dim(wf, "clip.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_int_in(wf, "clip.num_layers", 0, MODEL_MAX_LAYERS, &layers, err) ||
        !meta_dim(wf, "clip.image_size", 4096, &c->image_size, err) ||
        !meta_dim(wf, "clip.patch_size", 256, &c->patch_size, err) ||
        !meta_positive(wf, "clip.layer_norm_eps", 1.0, &eps, err) ||
        !meta_int_in(wf, "hd.num_crops", 1, 4096, &crops, err) ||
        !meta_int_in(wf, "hd.num_img_tokens", 1, MODEL_MAX_DIM, &view_tokens, err) ||
        !wf_f64_array(wf, "image.mean", mean, 3, err) || !wf_f64_array(wf, "image.std", std, 3, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->n_layers = (int)layers;
    c->norm_eps = (float)eps;
    c->out_dim = text_hidden;
    if (c->hidden % c->n_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "clip.hidden_size %d is not a multiple of clip.num_heads %d", c->hidden,
                    c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    if (c->image_size % c->patch_size != 0 || (c->image_size / c->patch_size) % 2 != 0)
        return fail(err, ABC_ERR_FORMAT, "clip.image_size %d is not an even number of clip.patch_size %d patches",
                    c->image_size, c->patch_size);
    c->grid = c->image_size / c->patch_size;
    c->patch_dim = 3 * c->patch_size * c->patch_size;
    if ((int64_t)(c->grid / 2) * (c->grid / 2) != view_tokens)
        return fail(err, ABC_ERR_FORMAT, "hd.num_img_tokens %lld != (clip.image_size / clip.patch_size / 2)² = %d",
                    (long long)view_tokens, (c->grid / 2) * (c->grid / 2));
    memset(hd, 0, sizeof *hd);
    hd->num_crops = num_crops_override > 0 ? num_crops_override : (int)crops;
    hd->crop_size = c->image_size;
    for (int ch = 0; ch < 3; ch++) {
        if (!isfinite(mean[ch]) || !isfinite(std[ch]) || !(fabs(std[ch]) > 1e-12))
            return fail(err, ABC_ERR_FORMAT, "image.mean/image.std channel %d is not usable", ch);
        hd->mean[ch] = (float)mean[ch];
        hd->std[ch] = (float)std[ch];
    }
    return ABC_OK;
}

static abc_status phi3v_read_config(abc_model *m, abc_error *err) {
    const weight_file *wf = &m->wf;
    phi3v_data *d = xcalloc(1, sizeof *d);
    if (!d) return fail(err, ABC_ERR_NOMEM, "out of memory reading the configuration");
    m->family_data = d;
    if (m->params.min_pixels || m->params.max_pixels)
        return fail(err, ABC_ERR_INVALID_ARG, "min_pixels/max_pixels apply to qwen2_vl models; phi3_v's budget is num_crops");
    abc_status st = read_phi3_rope(wf, &m->text, &d->rope_factors, err);
    if (st == ABC_OK) st = read_clip_config(wf, &d->clip, &d->hd, m->text.hidden, m->params.num_crops, err);
    if (st != ABC_OK) return st;
    /* image tokens are the processor's -1 marker; every text chunk starts with <s> */
    m->text.image_token = m->text.vision_start_token = m->text.vision_end_token = m->text.video_token = -1;
    m->text.merge_size = 1;
    if (!meta_token_id(wf, "tokens.bos", m->text.vocab, &d->bos_token, err)) return err ? err->code : ABC_ERR_FORMAT;
    return ABC_OK;
}

static abc_status phi3v_bind(binder *b, abc_model *m) {
    phi3v_data *d = m->family_data;
    const clip_config *c = &d->clip;
    clip_weights *w = &d->clip_w;
    const int64_t C = c->hidden, I = c->intermediate, wide = 4 * C, H = c->out_dim;
    char p[128];
    int rank = 0, width = 0; /* phi3_v has no query adapter; bind_linear still checks there is none */
    w->layers = xcalloc((size_t)MAX(c->n_layers, 1), sizeof *w->layers);
    if (!w->layers) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the CLIP encoder");
    bind_linear(b, &w->patch_embed, "clip.embeddings.patch_embedding", C, c->patch_dim, false, &rank, &width);
    w->class_embedding = bind_vector(b, C, "clip.embeddings.class_embedding");
    w->position_embedding = bind_tensor(b, true, (int64_t)c->grid * c->grid + 1, C,
                                        "clip.embeddings.position_embedding.weight");
    w->pre_ln_w = bind_vector(b, C, "clip.pre_layrnorm.weight");
    w->pre_ln_b = bind_vector(b, C, "clip.pre_layrnorm.bias");
    for (int i = 0; i < c->n_layers && b->status == ABC_OK; i++) {
        clip_layer *l = &w->layers[i];
#define CNAME(s) (snprintf(p, sizeof p, "clip.layers.%d.%s", i, s), p)
        l->ln1_w = bind_vector(b, C, CNAME("layer_norm1.weight"));
        l->ln1_b = bind_vector(b, C, CNAME("layer_norm1.bias"));
        l->ln2_w = bind_vector(b, C, CNAME("layer_norm2.weight"));
        l->ln2_b = bind_vector(b, C, CNAME("layer_norm2.bias"));
        bind_linear(b, &l->q, CNAME("self_attn.q_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->k, CNAME("self_attn.k_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->v, CNAME("self_attn.v_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->out, CNAME("self_attn.out_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->fc1, CNAME("mlp.fc1"), I, C, true, &rank, &width);
        bind_linear(b, &l->fc2, CNAME("mlp.fc2"), C, I, true, &rank, &width);
#undef CNAME
    }
    w->glb_gn = bind_vector(b, wide, "hd.glb_GN");
    w->sub_gn = bind_vector(b, wide, "hd.sub_GN");
    bind_linear(b, &w->proj0, "hd.img_projection.0", H, wide, true, &rank, &width);
    bind_linear(b, &w->proj2, "hd.img_projection.2", H, H, true, &rank, &width);
    if (b->status == ABC_OK && rank > 0)
        return fail(b->err, ABC_ERR_FORMAT, "phi3_v files carry no query adapter on the vision side");
    return b->status;
}

static void phi3v_free(void *family_data) {
    phi3v_data *d = family_data;
    if (d) {
        free(d->clip_w.layers);
        free(d->rope_factors);
    }
    free(d);
}

static void phi3v_describe(const abc_model *m, char *out, size_t cap) {
    const text_config *t = &m->text;
    const clip_config *c = &phi3v_of(m)->clip;
    char rope[160] = "rope plain";
    if (t->rope_short_factor)
        snprintf(rope, sizeof rope, "rope su (long factors beyond %lld of %lld positions)",
                 (long long)t->rope_original_max_positions, (long long)t->rope_max_positions);
    snprintf(out, cap,
             "architecture: phi3_v (preset %s), weights %s\n"
             "vision: CLIP, %d layers run, width %d, %d heads, mlp %d, patch %d, image %d; HD transform with "
             "%d crops, 2x2 merge + separators, projection %d -> %d\n"
             "language: %d layers, hidden %d, %d heads (%d kv), head_dim %d, intermediate %d, vocab %lld, %s\n"
             "attention %s, pooling %s, head %s%s, embedding dim %d\n",
             m->preset, m->dtype ? m->dtype : "?", c->n_layers, c->hidden, c->n_heads, c->intermediate,
             c->patch_size, c->image_size, phi3v_of(m)->hd.num_crops, 4 * c->hidden, c->out_dim, t->n_layers, t->hidden,
             t->n_heads, t->n_kv_heads, t->head_dim, t->intermediate, (long long)t->vocab, rope,
             t->causal ? "causal" : "bidirectional", pooling_name(m->pooling),
             m->has_head ? "mlp" : "none", m->normalize ? ", L2-normalized" : "", m->embedding_dim);
}

/* phi3_v: `n_slots` views of 3×S×S (slot 0 global, then the crops), grid = (1, h_crop, w_crop) with
 * 1 + h·w = n_slots; the -1 image tokens must be whole images' worth, and only with an image. */
static abc_status phi3v_check_image(abc_context *ctx, size_t n_image_tokens, const float *pixels, size_t n_slots,
                                   const int grid[3]) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (!pixels) {
        if (n_image_tokens)
            return fail(err, ABC_ERR_PROMPT, "the tokens contain %zu image tokens (-1) but there is no image",
                        n_image_tokens);
        return ABC_OK;
    }
    if (grid[0] != 1 || grid[1] < 1 || grid[2] < 1 || (int64_t)grid[1] * grid[2] > 4096)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) is not (1, h_crop, w_crop) with 1 to 4096 crops",
                    grid[0], grid[1], grid[2]);
    if ((uint64_t)grid[1] * (uint64_t)grid[2] + 1 != (uint64_t)n_slots)
        return fail(err, ABC_ERR_INVALID_ARG, "a %dx%d crop grid needs %lld image slots (global view + crops), not %zu",
                    grid[1], grid[2], (long long)grid[1] * grid[2] + 1, n_slots);
    const int64_t per_image = hd_image_token_count(&phi3v_of(m)->clip, grid[1], grid[2]);
    if (n_image_tokens == 0 || n_image_tokens % (uint64_t)per_image != 0)
        return fail(err, ABC_ERR_PROMPT, "the image needs %lld image tokens (-1) per placeholder but the tokens contain %zu",
                    (long long)per_image, n_image_tokens);
    return ABC_OK;
}

/* Plain 0..L-1 ([L]), which the rotary tables read as component 0. */
static abc_status phi3v_position_ids(abc_context *ctx, const int32_t *ids, int64_t L, const float *pixels,
                                     const int grid[3], int32_t *pos) {
    (void)ids;
    (void)pixels;
    (void)grid;
    for (int64_t i = 0; i < L; i++) pos[i] = (int32_t)i;
    return emit_stage(ctx, ABC_STAGE_POSITION_IDS, ABC_DTYPE_I32, 1, &L, pos);
}

/* phi3_v: CLIP on the 1 + h·w slots ("clip_patch_features" [slots, grid², C]), then the HD layout and
 * projection into *image [n][H] ("image_features"). */
static abc_status phi3v_encode_image(abc_context *ctx, const float *pixels, size_t n_slots, const int grid[3],
                                     int adapter, float **image, int64_t *n_rows) {
    (void)adapter; /* no run-time adapters */
    const abc_model *m = ctx->model;
    const phi3v_data *d = phi3v_of(m);
    const clip_config *c = &d->clip;
    abc_error *err = &ctx->err;
    const int64_t P = (int64_t)c->grid * c->grid, n = hd_image_token_count(c, grid[1], grid[2]);
    size_t feature_bytes, image_bytes;
    float *features = NULL;
    *image = NULL;
    if (mul_size(floats_for((int64_t)n_slots * P, c->hidden), sizeof(float), &feature_bytes) &&
        mul_size(floats_for(n, m->text.hidden), sizeof(float), &image_bytes)) {
        features = xmalloc_aligned(feature_bytes);
        *image = xmalloc_aligned(image_bytes);
    }
    abc_status st = ABC_OK;
    if (!features || !*image) st = fail(err, ABC_ERR_NOMEM, "out of memory for the image features");
    if (st == ABC_OK) st = clip_forward(ctx->pool, c, &d->clip_w, pixels, (int)n_slots, &ctx->ws, features, err);
    int64_t shape[3] = {(int64_t)n_slots, P, c->hidden};
    if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_CLIP_FEATURES, ABC_DTYPE_F32, 3, shape, features);
    if (st == ABC_OK) st = hd_project(ctx->pool, c, &d->clip_w, features, grid[1], grid[2], &ctx->ws, *image, err);
    shape[0] = n;
    shape[1] = m->text.hidden;
    if (st == ABC_OK) st = emit_stage(ctx, ABC_STAGE_IMAGE_FEATURES, ABC_DTYPE_F32, 2, shape, *image);
    free(features);
    *n_rows = n;
    return st;
}

/* The placeholders in a phi3_v prompt. The processor treats every <|image_N|> as image N; inputs carry
 * one image, so any other N is an error rather than text. */
static abc_status count_phi3_placeholders(abc_context *ctx, const char *prompt, size_t *n) {
    static const char tag[] = "<|image_";
    const char *placeholder = ctx->model->placeholder;
    *n = 0;
    for (const char *p = strstr(prompt, tag); p; p = strstr(p + 1, tag)) {
        const char *q = p + sizeof tag - 1;
        if (*q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (q[0] != '|' || q[1] != '>') continue;
        if (strncmp(p, placeholder, strlen(placeholder)) != 0 || (size_t)(q + 2 - p) != strlen(placeholder))
            return fail(&ctx->err, ABC_ERR_PROMPT, "the prompt refers to '%.*s' but an input has one image, %s",
                        (int)MIN(q + 2 - p, 32), p, placeholder);
        (*n)++;
    }
    return ABC_OK;
}

/* Phi-3-V's processor: the prompt split on the placeholder; every chunk (empty ones too) becomes
 * [<s>] + its tokens, and each placeholder `per_image` image tokens (-1). */
static abc_status phi3_prompt_ids(abc_context *ctx, const char *prompt, int64_t per_image, int_vec *ids) {
    const abc_model *m = ctx->model;
    const char *placeholder = m->placeholder;
    const size_t placeholder_len = strlen(placeholder);
    const int32_t bos = tokenizer_bos_id(m->tok) >= 0 ? tokenizer_bos_id(m->tok) : phi3v_of(m)->bos_token;
    for (const char *chunk = prompt;;) {
        const char *end = strstr(chunk, placeholder);
        const size_t len = end ? (size_t)(end - chunk) : strlen(chunk);
        if (!int_vec_push(ids, bos)) return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
        abc_status st = tokenizer_encode_max(m->tok, chunk, len, (size_t)m->params.max_tokens, ids, &ctx->err);
        if (st != ABC_OK) return st;
        if (!end) break;
        if ((uint64_t)ids->len + (uint64_t)per_image > (uint64_t)m->params.max_tokens)
            return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence would have more than %d tokens",
                        m->params.max_tokens);
        for (int64_t k = 0; k < per_image; k++)
            if (!int_vec_push(ids, m->text.image_token))
                return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
        chunk = end + placeholder_len;
    }
    if (ids->len > (size_t)m->params.max_tokens)
        return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence has %zu tokens, more than the limit of %d", ids->len,
                    m->params.max_tokens);
    return ABC_OK;
}

/* Decodes ("decoded"), applies the HD transform ("hd_image", "image_sizes" = the padded image's
 * (height, width), "pixel_values" [slots, 3, S, S]); grid = (1, h_crop, w_crop). */
static abc_status prepare_hd_image(abc_context *ctx, const abc_input *in, float **pixels, size_t *n_slots,
                                   int grid[3]) {
    const abc_model *m = ctx->model;
    abc_image decoded = {0}, hd = {0};
    int h_crop = 0, w_crop = 0;
    abc_status st = load_input_image(ctx, in, &decoded);
    if (st != ABC_OK) return st;
    int64_t shape[4] = {decoded.height, decoded.width, 3, 0};
    st = emit_stage(ctx, ABC_STAGE_DECODED, ABC_DTYPE_U8, 3, shape, decoded.rgb);
    if (st == ABC_OK) st = preprocess_hd_image(&decoded, &phi3v_of(m)->hd, &hd, pixels, &h_crop, &w_crop, &ctx->err);
    free(decoded.rgb);
    if (st == ABC_OK) {
        shape[0] = hd.height;
        shape[1] = hd.width;
        st = emit_stage(ctx, ABC_STAGE_HD_IMAGE, ABC_DTYPE_U8, 3, shape, hd.rgb);
    }
    if (st == ABC_OK) {
        const int32_t sizes[2] = {hd.height, hd.width};
        shape[0] = 2;
        st = emit_stage(ctx, ABC_STAGE_IMAGE_SIZES, ABC_DTYPE_I32, 1, shape, sizes);
    }
    if (st == ABC_OK) {
        *n_slots = 1 + (size_t)h_crop * (size_t)w_crop;
        shape[0] = (int64_t)*n_slots;
        shape[1] = 3;
        shape[2] = shape[3] = phi3v_of(m)->hd.crop_size;
        st = emit_stage(ctx, ABC_STAGE_PIXEL_VALUES, ABC_DTYPE_F32, 4, shape, *pixels);
    }
    free(hd.rgb);
    grid[0] = 1;
    grid[1] = h_crop;
    grid[2] = w_crop;
    if (st != ABC_OK) {
        free(*pixels);
        *pixels = NULL;
    }
    return st;
}

static abc_status phi3v_prepare(abc_context *ctx, const abc_input *in, const char *prompt, bool has_image,
                                int adapter, model_sequence *seq) {
    (void)adapter; /* no run-time adapters */
    const abc_model *m = ctx->model;
    size_t n_placeholders;
    abc_status st = count_phi3_placeholders(ctx, prompt, &n_placeholders);
    if (st != ABC_OK) return st;
    if (has_image && n_placeholders == 0)
        return fail(&ctx->err, ABC_ERR_PROMPT, "an image was given but the prompt has no %s for it", m->placeholder);
    if (!has_image && n_placeholders > 0)
        return fail(&ctx->err, ABC_ERR_PROMPT, "the prompt has %s but no image was given", m->placeholder);
    int_vec raw = {0};
    st = phi3_prompt_ids(ctx, prompt, 1, &raw); /* one -1 per placeholder: prompt errors before image work */
    if (st == ABC_OK && has_image) st = prepare_hd_image(ctx, in, &seq->pixels, &seq->n_patches, seq->grid);
    if (st == ABC_OK)
        st = expand_image_tokens(ctx, &raw,
                                 has_image ? hd_image_token_count(&phi3v_of(m)->clip, seq->grid[1], seq->grid[2]) : 1,
                                 &seq->ids);
    seq->adapter = ADAPTER_NONE;
    int_vec_free(&raw);
    return st;
}

static const char *const phi3v_stages[] = {
    ABC_STAGE_DECODED,       ABC_STAGE_HD_IMAGE,       ABC_STAGE_IMAGE_SIZES,    ABC_STAGE_PIXEL_VALUES,
    ABC_STAGE_INPUT_IDS,     ABC_STAGE_POSITION_IDS,   ABC_STAGE_CLIP_FEATURES,  ABC_STAGE_IMAGE_FEATURES,
    ABC_STAGE_INPUTS_EMBEDS, ABC_STAGE_LAST_HIDDEN,    ABC_STAGE_EMBEDDING,      NULL};

static const model_family family_phi3v = {
    .architecture = "phi3_v",
    .stages = phi3v_stages,
    .query_adapter = false,
    .text_qkv_bias = false,
    .read_config = phi3v_read_config,
    .bind = phi3v_bind,
    .free_data = phi3v_free,
    .describe = phi3v_describe,
    .prepare = phi3v_prepare,
    .check_image = phi3v_check_image,
    .position_ids = phi3v_position_ids,
    .encode_image = phi3v_encode_image,
};

/* ================================================================================================
 * 11d. The family table; loading and freeing a model
 * ================================================================================================ */

static const model_family *const model_families[] = {&family_qwen2vl, &family_phi3v, &family_qwen25vl};
#define N_MODEL_FAMILIES (sizeof model_families / sizeof model_families[0])

/* Every stage name of every family, each once, in first-seen order (abc_model_stages(NULL)). */
static const char *const all_stages[] = {
    ABC_STAGE_DECODED,       ABC_STAGE_RESIZED,        ABC_STAGE_HD_IMAGE,      ABC_STAGE_IMAGE_SIZES,
    ABC_STAGE_PIXEL_VALUES,  ABC_STAGE_INPUT_IDS,      ABC_STAGE_POSITION_IDS,  ABC_STAGE_VISION_EMBEDS,
    ABC_STAGE_CLIP_FEATURES, ABC_STAGE_IMAGE_FEATURES, ABC_STAGE_INPUTS_EMBEDS, ABC_STAGE_LAST_HIDDEN,
    ABC_STAGE_EMBEDDING,     ABC_STAGE_MULTI_VECTOR,   NULL};

static abc_status build_description(abc_model *m, abc_error *err) {
    const size_t cap = 1024;
    m->description = xmalloc(cap);
    if (!m->description) return fail(err, ABC_ERR_NOMEM, "out of memory");
    m->family->describe(m, m->description, cap);
    const size_t n = strlen(m->description);
    if (m->multi.dim)
        snprintf(m->description + n, cap - n, "multi-vector output: one %d-float vector per token, L2-normalized\n",
                 m->multi.dim);
    return ABC_OK;
}

static void model_free(abc_model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    if (m->family) m->family->free_data(m->family_data);
    free(m->text_w.layers);
    free(m->preset);
    free(m->dtype);
    free(m->prompt_image_text);
    free(m->prompt_text_candidate);
    for (int i = 0; i < m->n_tasks; i++) {
        free(m->task_names[i]);
        free((char *)m->adapter_prefix[i + 1]);
    }
    free(m->prompt_image);
    free(m->prompt_text);
    free(m->placeholder);
    free(m->prompt_instruction);
    free(m->prompt_video_text);
    free(m->prompt_video);
    free(m->video_placeholder);
    free(m->description);
    weight_file_close(&m->wf);
    free(m);
}

/* From a path (mapped) or, when path is NULL, from the caller's bytes. */
static abc_status model_load(const char *path, const void *data, size_t size, const abc_model_params *params,
                             abc_model **out, abc_error *err) {
    abc_model *m = xcalloc(1, sizeof *m);
    if (!m) return fail(err, ABC_ERR_NOMEM, "out of memory loading '%s'", path ? path : "model data");
    m->params = *params;
    abc_status st = path ? weight_file_open_ex(path, params->load_into_memory != 0, &m->wf, err)
                         : weight_file_borrow(data, size, &m->wf, err);
    if (st == ABC_OK) st = read_config(m, model_families, N_MODEL_FAMILIES, err);
    if (st == ABC_OK) st = bind_weights(m, err);
    if (st == ABC_OK) st = tokenizer_load(&m->wf, &m->tok, err);
    if (st == ABC_OK && m->text.vocab < 1) st = fail(err, ABC_ERR_FORMAT, "empty vocabulary");
    if (st == ABC_OK) st = build_description(m, err);
    if (st != ABC_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return ABC_OK;
}

/* ================================================================================================
 * 11e. Public API (abc.h): model and context lifetime, the embedding entry points
 * ================================================================================================ */

#define ABC_MAX_THREADS 1024

const char *abc_version(void) { return ABC_VERSION_STRING; }

static char system_info_text[256];
#if !defined(ABC_NO_THREADS)
static pthread_once_t system_info_once = PTHREAD_ONCE_INIT;
#endif

static void system_info_fill(void) {
    const cpu_features f = cpu_features_detect();
    char features[96] = "";
    size_t n = 0;
    const struct { bool on; const char *name; } found[] = {
        {f.avx2_fma, " avx2+fma+f16c"}, {f.avx512, " avx512(f,bw,vl)"}, {f.avx512vnni, " avx512vnni"},
        {f.neon, " neon"},              {f.neon_dot, " dotprod"},
    };
    for (size_t i = 0; i < sizeof found / sizeof found[0]; i++)
        if (found[i].on) n += (size_t)snprintf(features + n, sizeof features - n, "%s", found[i].name);
#if defined(__clang__)
    const char *compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    const char *compiler = "gcc " __VERSION__;
#else
    const char *compiler = "unknown compiler";
#endif
    snprintf(system_info_text, sizeof system_info_text, "abc %s; kernels %s; cpu features:%s; cpus %d; %s",
             ABC_VERSION_STRING, kernel_path_name(kernel_path_chosen(&f)), n ? features : " none", online_cpus(),
             compiler);
}

const char *abc_system_info(void) {
#if defined(ABC_NO_THREADS)
    if (!system_info_text[0]) system_info_fill(); /* one thread: nothing can race */
#else
    pthread_once(&system_info_once, system_info_fill);
#endif
    return system_info_text;
}

const char *abc_status_string(abc_status status) {
    switch (status) {
    case ABC_OK: return "ok";
    case ABC_ERR_INVALID_ARG: return "invalid argument";
    case ABC_ERR_IO: return "input/output error";
    case ABC_ERR_FORMAT: return "malformed model file";
    case ABC_ERR_VERSION: return "unsupported model file version";
    case ABC_ERR_NOMEM: return "out of memory";
    case ABC_ERR_IMAGE: return "bad image";
    case ABC_ERR_UNSUPPORTED: return "unsupported feature";
    case ABC_ERR_TOO_LARGE: return "input too large";
    case ABC_ERR_UTF8: return "invalid UTF-8";
    case ABC_ERR_PROMPT: return "prompt and inputs disagree";
    case ABC_ERR_STOPPED: return "stopped by the stage callback";
    case ABC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* ---- model ---- */

abc_model_params abc_model_default_params(void) {
    abc_model_params p;
    p.max_image_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    p.max_tokens = ABC_DEFAULT_MAX_TOKENS;
    p.num_crops = 0;
    p.min_pixels = p.max_pixels = 0;
    p.max_decode_ratio = ABC_DEFAULT_MAX_DECODE_RATIO;
    p.load_into_memory = 0;
    return p;
}

/* The caller's params (NULL: defaults) checked, zeros replaced by the defaults. */
static abc_status model_params_resolve(const abc_model_params *params, abc_model_params *p, abc_error *err) {
    *p = params ? *params : abc_model_default_params();
    if (p->max_tokens < 0) return fail(err, ABC_ERR_INVALID_ARG, "max_tokens %d is negative", p->max_tokens);
    if (p->num_crops < 0 || p->num_crops > 4096)
        return fail(err, ABC_ERR_INVALID_ARG, "num_crops %d is outside 0..4096", p->num_crops);
    if (p->max_image_pixels == 0) p->max_image_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    if (p->max_tokens == 0) p->max_tokens = ABC_DEFAULT_MAX_TOKENS;
    if (p->max_decode_ratio == 0) p->max_decode_ratio = ABC_DEFAULT_MAX_DECODE_RATIO;
    if (p->min_pixels < 0 || p->max_pixels < 0 || p->min_pixels > (INT64_C(1) << 40) || p->max_pixels > (INT64_C(1) << 40))
        return fail(err, ABC_ERR_INVALID_ARG, "min_pixels %lld / max_pixels %lld are outside 0..2^40",
                    (long long)p->min_pixels, (long long)p->max_pixels);
    return ABC_OK;
}

abc_status abc_model_load(const char *path, const abc_model_params *params, abc_model **out, abc_error *err) {
    clear_error(err);
    if (!out) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load: out is NULL");
    *out = NULL;
    if (!path) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load: path is NULL");
    abc_model_params p;
    abc_status st = model_params_resolve(params, &p, err);
    return st != ABC_OK ? st : model_load(path, NULL, 0, &p, out, err);
}

abc_status abc_model_load_from_memory(const void *data, size_t size, const abc_model_params *params,
                                      abc_model **out, abc_error *err) {
    clear_error(err);
    if (!out) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load_from_memory: out is NULL");
    *out = NULL;
    if (!data) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load_from_memory: data is NULL");
    abc_model_params p;
    abc_status st = model_params_resolve(params, &p, err);
    return st != ABC_OK ? st : model_load(NULL, data, size, &p, out, err);
}

void abc_model_free(abc_model *model) { model_free(model); }

int abc_model_embedding_dim(const abc_model *model) { return model ? model->embedding_dim : 0; }
int abc_model_multi_vector_dim(const abc_model *model) { return model ? model->multi.dim : 0; }

const char *abc_model_preset(const abc_model *model) { return model ? model->preset : ""; }

const char *const *abc_model_tasks(const abc_model *model) {
    static const char *const none[1] = {NULL};
    return model ? (const char *const *)model->task_names : none;
}

const char *abc_model_default_task(const abc_model *model) {
    return model && model->n_tasks ? model->task_names[model->default_adapter - 1] : NULL;
}

const int *abc_model_matryoshka_dims(const abc_model *model, int *n) {
    const int count = model ? model->n_matryoshka : 0;
    if (n) *n = count;
    return count ? model->matryoshka : NULL;
}

const char *abc_model_description(const abc_model *model) { return model ? model->description : ""; }

const char *const *abc_model_stages(const abc_model *model) { return model ? model->family->stages : all_stages; }

/* ---- context ---- */

abc_context_params abc_context_default_params(void) {
    abc_context_params p;
    memset(&p, 0, sizeof p);
    return p;
}

abc_status abc_context_new(const abc_model *model, const abc_context_params *params, abc_context **out,
                           abc_error *err) {
    clear_error(err);
    if (!out) return fail(err, ABC_ERR_INVALID_ARG, "abc_context_new: out is NULL");
    *out = NULL;
    if (!model) return fail(err, ABC_ERR_INVALID_ARG, "abc_context_new: model is NULL");
    abc_context_params p = params ? *params : abc_context_default_params();
    if (p.n_threads < 0 || p.n_threads > ABC_MAX_THREADS)
        return fail(err, ABC_ERR_INVALID_ARG, "n_threads %d is outside 0..%d", p.n_threads, ABC_MAX_THREADS);
    abc_context *ctx = xcalloc(1, sizeof *ctx);
    if (!ctx) return fail(err, ABC_ERR_NOMEM, "out of memory creating a context");
    ctx->model = model;
    ctx->on_stage = p.on_stage;
    ctx->on_stage_user = p.on_stage_user;
    if (p.arena) {
        /* from the first 64-byte boundary: the arena's blocks are SIMD-aligned */
        const size_t skip = (size_t)(-(uintptr_t)p.arena & 63);
        ctx->arena.base = (uint8_t *)p.arena + skip;
        ctx->arena.cap = p.arena_size > skip ? (p.arena_size - skip) & ~(size_t)63 : 0;
    }
    abc_status st = thread_pool_new(p.n_threads, &ctx->pool); /* 0: one per online CPU */
    if (st != ABC_OK) {
        free(ctx);
        return fail(err, st, "cannot start %d worker threads", p.n_threads);
    }
    ctx->n_threads = thread_pool_size(ctx->pool);
    *out = ctx;
    return ABC_OK;
}

void abc_context_free(abc_context *ctx) {
    if (!ctx) return;
    thread_pool_free(ctx->pool);
    workspace_free(&ctx->ws);
    free(ctx);
}

const char *abc_context_errmsg(const abc_context *ctx) { return ctx ? ctx->err.message : "no context"; }

abc_input abc_input_default(void) {
    abc_input in;
    memset(&in, 0, sizeof in);
    in.role = ABC_ROLE_AUTO;
    return in;
}

/* ---- embedding ---- */

static bool role_valid(abc_role role) {
    return role == ABC_ROLE_AUTO || role == ABC_ROLE_QUERY || role == ABC_ROLE_CANDIDATE;
}

static abc_status check_output(abc_context *ctx, const float *out, size_t out_len, int dim) {
    if (ctx->model->pooling == POOL_NONE)
        return fail(&ctx->err, ABC_ERR_UNSUPPORTED, "preset %s gives one vector per token and no single embedding: "
                    "use abc_embed_multi", ctx->model->preset);
    if (!out) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer is NULL");
    if (out_len < (size_t)dim)
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer holds %zu floats, the embedding has %d", out_len,
                    dim);
    return ABC_OK;
}

/* abc_input.task → the adapter slot; a task whose candidates take the query prompt (jina-v4
 * text-matching) clears *candidate_prompt. */
static abc_status choose_task(abc_context *ctx, const abc_input *in, int *adapter, bool *candidate_prompt) {
    const abc_model *m = ctx->model;
    if (!in->task) {
        if (m->n_tasks) *adapter = m->default_adapter;
        if (m->n_tasks && m->task_query_prompt[m->default_adapter - 1]) *candidate_prompt = false;
        return ABC_OK;
    }
    if (!m->n_tasks)
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "preset %s has no task adapters (task \"%.64s\")", m->preset,
                    in->task);
    const int i = task_index(m, in->task, strlen(in->task));
    if (i < 0) {
        char names[256] = "";
        size_t n = 0;
        for (int k = 0; k < m->n_tasks && n < sizeof names; k++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", k ? ", " : "", m->task_names[k]);
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "unknown task \"%.64s\" (this model has: %s)", in->task, names);
    }
    *adapter = i + 1;
    if (m->task_query_prompt[i]) *candidate_prompt = false;
    return ABC_OK;
}

/* abc_input.dim: 0 (full), or in [1, full] and, where the file lists Matryoshka dims, one of them. */
static abc_status check_dim(abc_context *ctx, int dim) {
    const abc_model *m = ctx->model;
    if (dim == 0 || dim == m->embedding_dim) return ABC_OK;
    if (dim < 0 || dim > m->embedding_dim)
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "dim %d is outside [1, %d]", dim, m->embedding_dim);
    if (m->n_matryoshka == 0) return ABC_OK;
    char dims[256] = "";
    size_t n = 0;
    for (int k = 0; k < m->n_matryoshka; k++) {
        if (m->matryoshka[k] == dim) return ABC_OK;
        if (n < sizeof dims && m->matryoshka[k] != m->embedding_dim)
            n += (size_t)snprintf(dims + n, sizeof dims - n, "%d, ", m->matryoshka[k]);
    }
    return fail(&ctx->err, ABC_ERR_INVALID_ARG, "dim %d is not one of this model's Matryoshka dims (%s%d)", dim, dims,
                m->embedding_dim);
}

/* Matryoshka: the first `dim` values of the normalised vector, normalised again (jina-v4's order). */
static void truncate_embedding(float *v, int dim) { l2_normalize(v, dim); }

/* Checks an input and turns it into ids (and pixel values): everything before the model runs. */
static abc_status prepare_input(abc_context *ctx, const abc_input *in, model_sequence *seq) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (!in) return fail(err, ABC_ERR_INVALID_ARG, "the input is NULL");
    if (!role_valid(in->role)) return fail(err, ABC_ERR_INVALID_ARG, "role %d is not a valid abc_role", (int)in->role);
    const int sources = (in->image_path != NULL) + (in->image_data != NULL) + (in->rgb != NULL);
    if (sources > 1) return fail(err, ABC_ERR_INVALID_ARG, "give one image source, not %d", sources);
    if (in->image_data && in->image_size == 0) return fail(err, ABC_ERR_INVALID_ARG, "the image data is empty");
    if (in->n_frames < 0 || (in->n_frames > 0) != (in->frames != NULL))
        return fail(err, ABC_ERR_INVALID_ARG, "frames and n_frames (%d) disagree", in->n_frames);
    if (in->n_frames > 0 && sources)
        return fail(err, ABC_ERR_INVALID_ARG, "give an image or video frames, not both");
    if (in->n_frames > 0 && !m->prompt_video)
        return fail(err, ABC_ERR_UNSUPPORTED, "this model (preset %s) has no video input", m->preset);
    const bool has_image = sources == 1 || in->n_frames > 0, has_text = in->text != NULL;
    if (!has_image && !has_text && !in->prompt)
        return fail(err, ABC_ERR_INVALID_ARG, "nothing to embed: give an image, a text or a prompt");
    const bool query = in->role == ABC_ROLE_QUERY || (in->role == ABC_ROLE_AUTO && has_image && has_text);
    if (in->instruction && !m->prompt_instruction)
        return fail(err, ABC_ERR_INVALID_ARG, "preset %s has no instruction in its prompt (give the whole prompt instead)",
                    m->preset);

    if (has_image && has_text && !in->prompt && !m->prompt_image_text && !strstr(in->text, m->placeholder))
        return fail(err, ABC_ERR_UNSUPPORTED, "preset %s embeds an image or a text, not both", m->preset);
    int adapter = query && m->family->query_adapter ? ADAPTER_QUERY : ADAPTER_NONE;
    bool candidate_prompt = in->role == ABC_ROLE_CANDIDATE;
    abc_status st = choose_task(ctx, in, &adapter, &candidate_prompt);
    if (st == ABC_OK) st = check_dim(ctx, in->dim);
    if (st != ABC_OK) return st;

    char *prompt = build_prompt(m, in, has_image, candidate_prompt);
    if (!prompt) return fail(err, ABC_ERR_NOMEM, "out of memory building the prompt");
    st = m->family->prepare(ctx, in, prompt, has_image, adapter, seq);
    free(prompt);
    return st;
}

static abc_status embed_input(abc_context *ctx, const abc_input *in, float *out, size_t out_len) {
    if (!in) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the input is NULL");
    const int D = ctx->model->embedding_dim, dim = in->dim > 0 && in->dim < D ? in->dim : D;
    abc_status st = check_output(ctx, out, out_len, dim);
    model_sequence seq = {0};
    float *full = out;
    if (st == ABC_OK) st = prepare_input(ctx, in, &seq);
    if (st == ABC_OK && dim < D && !(full = xmalloc((size_t)D * sizeof *full)))
        st = fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the embedding");
    if (st == ABC_OK)
        st = run_model(ctx, seq.ids.data, seq.ids.len, seq.pixels, seq.n_patches, seq.grid, seq.adapter, false, full);
    if (st == ABC_OK && full != out) {
        memcpy(out, full, (size_t)dim * sizeof *out);
        truncate_embedding(out, dim);
    }
    if (full != out) free(full);
    model_sequence_free(&seq);
    return st;
}

static bool has_arena(const abc_context *ctx) { return ctx->arena.base || ctx->arena.measure; }

/* Makes the context's arena the source of every allocation until arena_end. */
static void arena_begin(abc_context *ctx) {
    arena_reset(&ctx->arena);
    ctx->arena.needed = 0;
    active_arena = &ctx->arena;
}

/* The buffers a context keeps between calls (its workspace, the pool's shared operands) were carved from
 * the arena: they go with it, and the next call starts from an empty arena. */
static abc_status arena_end(abc_context *ctx, abc_status st) {
    memset(&ctx->ws, 0, sizeof ctx->ws);
    memset(&ctx->pool->shared, 0, sizeof ctx->pool->shared);
    active_arena = NULL;
    arena_reset(&ctx->arena);
    if (st == ABC_ERR_NOMEM && ctx->arena.needed)
        return fail(&ctx->err, ABC_ERR_NOMEM, "the context's arena (%zu usable bytes) is too small: an allocation "
                    "needed %zu (abc_embed_arena_size tells what an input needs)", ctx->arena.cap, ctx->arena.needed);
    return st;
}

abc_status abc_embed(abc_context *ctx, const abc_input *input, float *out, size_t out_len) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    if (!has_arena(ctx)) return embed_input(ctx, input, out, out_len);
    arena_begin(ctx);
    return arena_end(ctx, embed_input(ctx, input, out, out_len));
}

/* The size query (out NULL, out_cap 0) stops after tokenisation and preprocessing: it costs no model run. */
static abc_status embed_multi_input(abc_context *ctx, const abc_input *in, float *out, size_t out_cap,
                                    size_t *n_vectors) {
    const abc_model *m = ctx->model;
    model_sequence seq = {0};
    abc_status st = prepare_input(ctx, in, &seq);
    if (st == ABC_OK) {
        *n_vectors = seq.ids.len;
        const size_t dim = (size_t)m->multi.dim;
        if (!out && out_cap == 0) {
            model_sequence_free(&seq);
            return ABC_OK;
        }
        if (!out) st = fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer is NULL");
        else if (seq.ids.len > out_cap / dim)
            st = fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer holds %zu floats, the %zu token vectors of %zu "
                      "need %zu", out_cap, seq.ids.len, dim, seq.ids.len * dim);
    }
    if (st == ABC_OK)
        st = run_model(ctx, seq.ids.data, seq.ids.len, seq.pixels, seq.n_patches, seq.grid, seq.adapter, true, out);
    model_sequence_free(&seq);
    return st;
}

abc_status abc_embed_multi(abc_context *ctx, const abc_input *input, float *out, size_t out_cap, size_t *n_vectors) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    if (!n_vectors) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "n_vectors is NULL");
    *n_vectors = 0;
    if (!ctx->model->multi.dim)
        return fail(&ctx->err, ABC_ERR_UNSUPPORTED, "preset %s has no multi-vector output (use abc_embed)",
                    ctx->model->preset);
    if (!input) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the input is NULL");
    if (!has_arena(ctx)) return embed_multi_input(ctx, input, out, out_cap, n_vectors);
    arena_begin(ctx);
    return arena_end(ctx, embed_multi_input(ctx, input, out, out_cap, n_vectors));
}

size_t abc_context_arena_used(const abc_context *ctx) { return ctx && ctx->arena.base ? ctx->arena.peak : 0; }

abc_status abc_embed_arena_size(const abc_model *model, const abc_context_params *params, const abc_input *input,
                                size_t *bytes, abc_error *err) {
    clear_error(err);
    if (!model || !input || !bytes) return fail(err, ABC_ERR_INVALID_ARG, "abc_embed_arena_size: NULL argument");
    *bytes = 0;
    abc_context_params p = params ? *params : abc_context_default_params();
    p.arena = NULL;
    p.arena_size = 0;
    p.on_stage = NULL;
    abc_input in = *input;
    uint8_t *gray = NULL;
    if (!in.image_path && !in.image_data && !in.rgb && (in.rgb_width || in.rgb_height)) {
        /* only the size matters: no buffer, a uniform image of that size stands in */
        size_t n;
        if (in.rgb_width <= 0 || in.rgb_height <= 0 ||
            !mul_size((size_t)in.rgb_width, (size_t)in.rgb_height * 3, &n))
            return fail(err, ABC_ERR_INVALID_ARG, "image size %d x %d is invalid", in.rgb_width, in.rgb_height);
        if (n / 3 > model->params.max_image_pixels)
            return fail(err, ABC_ERR_TOO_LARGE, "image %d x %d is over the model's max_image_pixels", in.rgb_width,
                        in.rgb_height);
        if (!(gray = xmalloc(n))) return fail(err, ABC_ERR_NOMEM, "out of memory");
        memset(gray, 128, n);
        in.rgb = gray;
        in.rgb_stride = 0;
    }
    abc_context *ctx;
    abc_status st = abc_context_new(model, &p, &ctx, err);
    if (st == ABC_OK) {
        /* a multi-vector model measures abc_embed_multi, its output sized by the size query */
        const bool multi = model->pooling == POOL_NONE;
        size_t n_out = (size_t)model->embedding_dim, n_vectors = 0;
        if (multi) {
            st = abc_embed_multi(ctx, &in, NULL, 0, &n_vectors);
            if (st != ABC_OK) fail(err, st, "%s", ctx->err.message);
            n_out = n_vectors * (size_t)model->multi.dim;
        }
        float *vec = st == ABC_OK ? xmalloc(MAX(n_out, 1) * sizeof(float)) : NULL;
        if (st == ABC_OK && !vec) st = fail(err, ABC_ERR_NOMEM, "out of memory");
        if (st == ABC_OK) {
            ctx->arena.measure = true;
            arena_begin(ctx);
            st = arena_end(ctx, multi ? embed_multi_input(ctx, &in, vec, n_out, &n_vectors)
                                      : embed_input(ctx, &in, vec, n_out));
            if (st == ABC_OK) *bytes = ctx->arena.peak;
            else fail(err, st, "%s", ctx->err.message);
        }
        free(vec);
        abc_context_free(ctx);
    }
    free(gray);
    return st;
}

/* AUTO for prepared tokens: a query when the sequence has an image and is not exactly the model's
 * image-only prompt (i.e. it carries text with the image), as abc_embed decides from its inputs. */
static abc_status tokens_are_query(abc_context *ctx, const int32_t *ids, size_t n_ids, bool has_image, bool *query) {
    *query = false;
    if (!has_image) return ABC_OK;
    const abc_model *m = ctx->model;
    int_vec image_only = {0};
    char *prompt = fill_template(m->prompt_image, "", m->prompt_instruction ? m->prompt_instruction : "");
    if (!prompt) return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory");
    abc_status st = tokenizer_encode(m->tok, prompt, strlen(prompt), &image_only, &ctx->err);
    free(prompt);
    if (st == ABC_OK) {
        /* compare with runs of image tokens collapsed to one placeholder */
        size_t j = 0;
        bool same = true;
        for (size_t i = 0; i < n_ids && same; i++) {
            if (i > 0 && ids[i] == m->text.image_token && ids[i - 1] == m->text.image_token) continue;
            same = j < image_only.len && image_only.data[j++] == ids[i];
        }
        *query = !(same && j == image_only.len);
    }
    int_vec_free(&image_only);
    return st;
}

/* The work of abc_embed_tokens_ex after its argument checks (inside the arena when the context has one). */
static abc_status embed_tokens_input(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixel_values,
                                     size_t n_patches, const int grid_thw[3], abc_role role, const char *task,
                                     int dim, float *out) {
    const abc_model *m = ctx->model;
    const int D = m->embedding_dim;
    bool query = role == ABC_ROLE_QUERY, unused = false;
    abc_status st = ABC_OK;
    if (role == ABC_ROLE_AUTO && n_ids && m->family->query_adapter)
        st = tokens_are_query(ctx, ids, n_ids, pixel_values != NULL, &query);
    /* the adapter as abc_embed chooses it: the query adapter, then the task's where the file has tasks */
    int adapter = query && m->family->query_adapter ? ADAPTER_QUERY : ADAPTER_NONE;
    abc_input sel = abc_input_default();
    sel.task = task;
    if (st == ABC_OK) st = choose_task(ctx, &sel, &adapter, &unused);
    float *full = out;
    if (st == ABC_OK && dim > 0 && dim < D && !(full = xmalloc((size_t)D * sizeof *full)))
        st = fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the embedding");
    if (st == ABC_OK) st = run_model(ctx, ids, n_ids, pixel_values, n_patches, grid_thw, adapter, false, full);
    if (st == ABC_OK && full != out) {
        memcpy(out, full, (size_t)dim * sizeof *out);
        truncate_embedding(out, dim);
    }
    if (full != out) free(full);
    return st;
}

abc_status abc_embed_tokens_ex(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixel_values,
                               size_t n_patches, const int grid_thw[3], abc_role role, const char *task, int dim,
                               float *out, size_t out_len) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    abc_error *err = &ctx->err;
    const int D = ctx->model->embedding_dim;
    if (!ids && n_ids) return fail(err, ABC_ERR_INVALID_ARG, "ids is NULL");
    abc_status st = check_output(ctx, out, out_len, dim > 0 && dim < D ? dim : D);
    if (st == ABC_OK) st = check_dim(ctx, dim);
    if (st != ABC_OK) return st;
    if (!role_valid(role)) return fail(err, ABC_ERR_INVALID_ARG, "role %d is not a valid abc_role", (int)role);
    if (!pixel_values != (n_patches == 0))
        return fail(err, ABC_ERR_INVALID_ARG, "pixel_values and n_patches (%zu) disagree", n_patches);
    if (pixel_values && !grid_thw) return fail(err, ABC_ERR_INVALID_ARG, "pixel values need grid_thw");
    if (!has_arena(ctx)) return embed_tokens_input(ctx, ids, n_ids, pixel_values, n_patches, grid_thw, role, task, dim, out);
    arena_begin(ctx);
    return arena_end(ctx, embed_tokens_input(ctx, ids, n_ids, pixel_values, n_patches, grid_thw, role, task, dim, out));
}

abc_status abc_embed_tokens(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixel_values,
                            size_t n_patches, const int grid_thw[3], abc_role role, float *out, size_t out_len) {
    return abc_embed_tokens_ex(ctx, ids, n_ids, pixel_values, n_patches, grid_thw, role, NULL, 0, out, out_len);
}

/* ---- collections: abc_embed_batch ----
 * Inputs with an image go one at a time (threads work inside each). Text-only inputs are packed: up to a
 * pack's budget of sequences go through the decoder together, end to end with block-diagonal attention
 * and no padding (sequence_spans), so the weights are read once per pack instead of once per input.
 * Every decoder step is row-wise or per sequence, and a pack holds sequences of one kind only: the same
 * adapter setting, and all at most GEMV_MAX_ROWS tokens or all longer (the f32 matmul path each takes
 * alone, pool->path_rows). So row i is exactly what abc_embed gives for inputs[i] alone, whatever else
 * is in the batch. With a stage callback or an arena every input goes alone (stages are per input; the
 * arena is sized for one). */

#define PACK_TOKENS 512           /* rows of a pack of longer sequences (the GEMM path) */
#define PACK_SHORT_TOKENS 64      /* rows of a pack of short ones: the dot-product path keeps their x in L2 */
#define PACK_MAX_SEQUENCES 64
#define BATCH_PACKS (2 * (MODEL_MAX_ADAPTERS + 1)) /* per adapter setting (none, each slot) × short/long */

typedef struct {
    int32_t ids[PACK_TOKENS];
    int32_t pos[3 * PACK_TOKENS]; /* each sequence's position ids [3][its length], one after another */
    int64_t start[PACK_MAX_SEQUENCES + 1];
    size_t input[PACK_MAX_SEQUENCES]; /* the batch index of each sequence */
    int n;
    int64_t max_len;
} text_pack;

typedef struct {
    abc_context *ctx;
    float *out;
    size_t dim;
    abc_status *statuses;
    abc_status first; /* the failure of the lowest input index, with its message */
    size_t first_index;
    abc_error first_err;
    text_pack *packs; /* [2 · (adapter slot + 1) + short]; NULL: every input alone */
    const abc_input *inputs;
} batch_run;

static void batch_record(batch_run *b, size_t i, abc_status st) {
    if (b->statuses) b->statuses[i] = st;
    float *row = b->out + i * b->dim;
    const int dim = b->inputs ? b->inputs[i].dim : 0; /* NULL: rows packed by hand (tests) */
    if (st == ABC_OK && dim > 0 && (size_t)dim < b->dim) { /* Matryoshka: the rest of the row is zero */
        truncate_embedding(row, dim);
        for (size_t k = (size_t)dim; k < b->dim; k++) row[k] = 0.0f;
    }
    if (st == ABC_OK) return;
    for (size_t k = 0; k < b->dim; k++) row[k] = NAN;
    if (b->first == ABC_OK || i < b->first_index) {
        b->first = st;
        b->first_index = i;
        b->first_err = b->ctx->err;
    }
}

/* Embeds the pack's sequences in one pass and records each. */
static void pack_flush(batch_run *b, text_pack *p, int adapter) {
    if (p->n == 0) return;
    abc_context *ctx = b->ctx;
    const abc_model *m = ctx->model;
    const int64_t L = p->start[p->n], H = m->text.hidden;
    clear_error(&ctx->err);
    abc_status st = ABC_OK;
    float *hidden = xmalloc_aligned((size_t)L * (size_t)H * sizeof *hidden);
    if (!hidden) st = fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the hidden states of %lld tokens", (long long)L);
    if (st == ABC_OK) {
        const sequence_spans spans = {p->start, p->n};
        language_embed_inputs(&m->text, &m->text_w, p->ids, L, NULL, 0, hidden);
        ctx->pool->path_rows = p->max_len;
        st = language_decode(ctx->pool, &m->text, &m->text_w, &spans, p->pos, adapter, &ctx->ws, hidden, &ctx->err);
        ctx->pool->path_rows = 0;
    }
    for (int i = 0; i < p->n; i++) {
        abc_status si = st;
        if (si == ABC_OK) {
            clear_error(&ctx->err);
            const int64_t at = p->start[i];
            si = pool_and_head(ctx, p->ids + at, p->start[i + 1] - at, hidden + at * H, b->out + p->input[i] * b->dim);
        }
        batch_record(b, p->input[i], si);
    }
    free(hidden);
    p->n = 0;
    p->max_len = 0;
}

/* Adds a checked text-only sequence to the pack of its kind (flushing it first when full); *packed is
 * false when the sequence must run alone. */
static abc_status pack_add(batch_run *b, const model_sequence *seq, size_t index, bool *packed) {
    abc_context *ctx = b->ctx;
    const int64_t L = (int64_t)seq->ids.len;
    *packed = false;
    if (L > PACK_TOKENS) return ABC_OK;
    const bool is_short = L <= GEMV_MAX_ROWS;
    text_pack *p = &b->packs[2 * (seq->adapter + 1) + is_short];
    if (p->start[p->n] + L > (is_short ? PACK_SHORT_TOKENS : PACK_TOKENS) || p->n == PACK_MAX_SEQUENCES)
        pack_flush(b, p, seq->adapter);
    const int64_t at = p->start[p->n];
    abc_status st = ctx->model->family->position_ids(ctx, seq->ids.data, L, NULL, NULL, p->pos + 3 * at);
    if (st != ABC_OK) return st;
    memcpy(p->ids + at, seq->ids.data, (size_t)L * sizeof *p->ids);
    p->input[p->n++] = index;
    p->start[p->n] = at + L;
    p->max_len = MAX(p->max_len, L);
    *packed = true;
    return ABC_OK;
}

abc_status abc_embed_batch(abc_context *ctx, const abc_input *inputs, size_t n, float *out, abc_status *statuses) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    if (n == 0) return ABC_OK;
    if (!inputs) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "abc_embed_batch: inputs is NULL");
    if (!out) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "abc_embed_batch: out is NULL");
    const size_t dim = (size_t)ctx->model->embedding_dim;
    if (ctx->model->pooling == POOL_NONE) return check_output(ctx, out, 0, 0);
    if (dim == 0 || n > SIZE_MAX / sizeof(float) / dim)
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "abc_embed_batch: %zu inputs of %zu floats overflow", n, dim);
    const bool packing = !ctx->on_stage && !has_arena(ctx) && n > 1;
    batch_run b = {ctx, out, dim, statuses, ABC_OK, 0, {ABC_OK, ""}, NULL, inputs};
    if (packing) b.packs = xcalloc(BATCH_PACKS, sizeof *b.packs); /* when this fails, every input goes alone */
    for (size_t i = 0; i < n; i++) {
        clear_error(&ctx->err);
        model_sequence seq = {0};
        abc_status st = prepare_input(ctx, &inputs[i], &seq);
        bool packed = false;
        if (st == ABC_OK && b.packs && !seq.pixels) {
            st = check_tokens_and_image(ctx, seq.ids.data, seq.ids.len, NULL, 0, NULL);
            if (st == ABC_OK) st = pack_add(&b, &seq, i, &packed);
        }
        if (st == ABC_OK && !packed)
            st = run_model(ctx, seq.ids.data, seq.ids.len, seq.pixels, seq.n_patches, seq.grid, seq.adapter, false, out + i * dim);
        model_sequence_free(&seq);
        if (!packed) batch_record(&b, i, st);
    }
    for (int k = 0; b.packs && k < BATCH_PACKS; k++) pack_flush(&b, &b.packs[k], k / 2 - 1);
    free(b.packs);
    if (b.first == ABC_OK) {
        clear_error(&ctx->err);
        return ABC_OK;
    }
    return fail(&ctx->err, b.first, "input %zu: %s", b.first_index, b.first_err.message);
}
