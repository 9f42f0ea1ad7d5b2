/* Times the kernels (section 7) on the Qwen2-VL-2B shapes: matmul (f32, bf16, q8 and q4 weights) and
 * attention, per thread count, against the machine's measured FMA peak and, when built with
 * OPENBLAS=1, against OpenBLAS cblas_sgemm on the same f32 data. q8 and q4 count 2 operations per integer
 * multiply-add like the float rows (its %peak is against the float FMA peak, so it can pass 100%).
 * Where the q8 kernels have a one-instruction int8 dot product (VNNI vpdpbusd, NEON sdot), its measured
 * peak is printed too, and on VNNI the peak of the q8 micro-kernel's instruction mix (the per-block
 * float step included): their ratios to the FMA peak bound what q8 can gain over f32 on shapes that are
 * bound by arithmetic, not by reading the weights.
 *
 *   make bench [OPENBLAS=1]
 *   build/bench_kernels [--threads 1,2] [--path scalar|avx2|avx512|neon|neon32] [--quick] [--json] [--max-rows N] [--q4 [--reps N] [--cpu-time]]
 *
 * --q4 [--reps N] times q8 against q4 alone (a table per thread count, more shapes at few rows, weights
 * read from memory, two activation outlier channels); --cpu-time times by the process's CPU time (one
 * thread on a shared machine).
 * --max-rows N caps every shape's rows (matmul n, attention sequence length) at N: a run that finishes
 * under an emulator (qemu-user) shows the kernels run there, not how fast a board is.
 */
#include "../abc.c"
#include <time.h>
#ifdef BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);
#endif

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void cpu_model(char *out, size_t size) {
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0 && strncmp(line, "Model", 5) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        colon += 2;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(out, size, "%s", colon);
        break;
    }
    fclose(f);
}

/* ---- FMA peak: independent FMA chains, one copy per thread ---- */

#define PEAK_ITERATIONS 4000000L

typedef struct {
    int path;
    double flops[POOL_MAX_THREADS];
    float sink[POOL_MAX_THREADS];
} peak_job;

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static double fma_loop_avx2(float *sink) {
    __m256 a[10], m = _mm256_set1_ps(0.999999f), s = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < PEAK_ITERATIONS / 10; it++)
        for (int i = 0; i < 10; i++) a[i] = _mm256_fmadd_ps(a[i], m, s);
    __m256 t = a[0];
    for (int i = 1; i < 10; i++) t = _mm256_add_ps(t, a[i]);
    *sink = _mm256_cvtss_f32(t);
    return (double)(PEAK_ITERATIONS / 10) * 10 * 16;
}
__attribute__((target("avx2,fma,avx512f"))) static double fma_loop_avx512(float *sink) {
    __m512 a[12], m = _mm512_set1_ps(0.999999f), s = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < PEAK_ITERATIONS / 12; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, s);
    __m512 t = a[0];
    for (int i = 1; i < 12; i++) t = _mm512_add_ps(t, a[i]);
    *sink = _mm512_reduce_add_ps(t);
    return (double)(PEAK_ITERATIONS / 12) * 12 * 32;
}
#endif
#if defined(ABC_NEON_KERNELS)
static double fma_loop_neon(float *sink) {
    float32x4_t a[12], m = vdupq_n_f32(0.999999f), s = vdupq_n_f32(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = vdupq_n_f32((float)i);
    for (long it = 0; it < PEAK_ITERATIONS / 12; it++)
        for (int i = 0; i < 12; i++) a[i] = vfmaq_f32(s, a[i], m);
    float32x4_t t = a[0];
    for (int i = 1; i < 12; i++) t = vaddq_f32(t, a[i]);
    *sink = neon_addv_f32(t);
    return (double)(PEAK_ITERATIONS / 12) * 12 * 8;
}
#endif
static double fma_loop_scalar(float *sink) {
    float a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (long it = 0; it < PEAK_ITERATIONS / 80; it++)
        for (int i = 0; i < 8; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    *sink = a[0] + a[7];
    return (double)(PEAK_ITERATIONS / 80) * 8 * 2;
}

static void peak_task(void *arg, int task, int thread) {
    (void)thread;
    peak_job *job = arg;
    double flops = 0;
    switch (job->path) {
#if defined(__x86_64__)
    case KERNEL_AVX2: flops = fma_loop_avx2(&job->sink[task]); break;
    case KERNEL_AVX512: flops = fma_loop_avx512(&job->sink[task]); break;
#endif
#if defined(ABC_NEON_KERNELS)
    case KERNEL_NEON: flops = fma_loop_neon(&job->sink[task]); break;
#endif
    default: flops = fma_loop_scalar(&job->sink[task]); break;
    }
    job->flops[task] = flops;
}

static double thread_seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* GFLOP/s of one thread running independent FMA chains of the path's widest vectors: best of many
 * short runs, timed in thread CPU time so that neighbours on a shared machine do not lower it. The
 * peak for T threads is taken as T times this. */
static double measure_peak_per_thread(int path) {
    peak_job job;
    memset(&job, 0, sizeof job);
    job.path = path;
    double best = 0;
    for (int rep = 0; rep < 30; rep++) {
        double t0 = thread_seconds_now();
        peak_task(&job, 0, 0);
        best = MAX(best, job.flops[0] / (thread_seconds_now() - t0) * 1e-9);
    }
    return best;
}

/* ---- int8 dot-product peak: the q8 kernels' one instruction (VNNI vpdpbusd, NEON sdot), the same way ----
 * Each chain starts from its own value: chains that start equal are merged by the compiler. */

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double dot_loop_vnni(int32_t *sink) {
    __m512i a[12], w = _mm512_set1_epi32(0x01020304), x = _mm512_set1_epi32(0x05060708);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    for (long it = 0; it < PEAK_ITERATIONS / 12; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], w, x);
    __m512i t = a[0];
    for (int i = 1; i < 12; i++) t = _mm512_add_epi32(t, a[i]);
    *sink = _mm512_reduce_add_epi32(t);
    return (double)(PEAK_ITERATIONS / 12) * 12 * 128; /* 64 multiply-adds */
}

/* The VNNI q8 micro-kernel's arithmetic without its memory: per block of 32, eight int32 accumulators
 * (4 rows × 2 halves) each get 8 vpdpbusd, then the float step fma((float)sum, sx · sw, acc). */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double mix_loop_vnni(int32_t *sink) {
    __m512i s[8], w = _mm512_set1_epi32(0x01020304), x = _mm512_set1_epi32(0x05060708);
    __m512 f[8], sx = _mm512_set1_ps(1e-6f), sw = _mm512_set1_ps(0.5f);
    for (int i = 0; i < 8; i++) f[i] = _mm512_set1_ps((float)i);
    for (long blk = 0; blk < PEAK_ITERATIONS / 64; blk++) {
        __asm__ volatile("" : "+v"(w), "+v"(x), "+v"(sx)); /* nothing hoisted out of the block */
        for (int i = 0; i < 8; i++) s[i] = _mm512_set1_epi32(i);
        for (int k4 = 0; k4 < 8; k4++)
            for (int i = 0; i < 8; i++) s[i] = _mm512_dpbusd_epi32(s[i], w, x);
        for (int i = 0; i < 8; i++) f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(sx, sw), f[i]);
    }
    __m512 t = f[0];
    for (int i = 1; i < 8; i++) t = _mm512_add_ps(t, f[i]);
    *sink = (int32_t)_mm512_reduce_add_ps(t);
    return (double)(PEAK_ITERATIONS / 64) * 64 * 128;
}
#endif
#if defined(ABC_NEON_KERNELS) && defined(__aarch64__)
static Q8_DOTPROD_TARGET double dot_loop_sdot(int32_t *sink) {
    int32x4_t a[12];
    const int8x16_t w = vdupq_n_s8(3), x = vdupq_n_s8(5);
    for (int i = 0; i < 12; i++) a[i] = vdupq_n_s32(i);
    for (long it = 0; it < PEAK_ITERATIONS / 12; it++)
        for (int i = 0; i < 12; i++) __asm__(Q8_SDOT_ARCH "sdot %0.4s, %1.16b, %2.16b" : "+w"(a[i]) : "w"(w), "w"(x));
    int32x4_t t = a[0];
    for (int i = 1; i < 12; i++) t = vaddq_s32(t, a[i]);
    *sink = vaddvq_s32(t);
    return (double)(PEAK_ITERATIONS / 12) * 12 * 32; /* 16 multiply-adds */
}
#endif

/* GOP/s (2 per multiply-add) of one thread's int8 dot-product instruction on the path, as
 * measure_peak_per_thread; 0 where the path's q8 kernels have no such instruction (AVX2's take three
 * instructions per step, the scalar ones none). kernel_mix: the q8 micro-kernel's instruction mix
 * instead (VNNI only; 0 elsewhere): the most its products can reach with every operand in a register. */
static double measure_int8_peak_per_thread(int path, const cpu_features *f, bool kernel_mix) {
    double (*loop)(int32_t *) = NULL;
#if defined(__x86_64__)
    if (path == KERNEL_AVX512 && f->avx512vnni) loop = kernel_mix ? mix_loop_vnni : dot_loop_vnni;
#endif
#if defined(ABC_NEON_KERNELS) && defined(__aarch64__)
    if (path == KERNEL_NEON && f->neon_dot && !kernel_mix) loop = dot_loop_sdot;
#endif
    (void)path, (void)f, (void)kernel_mix;
    double best = 0;
    int32_t sink = 0;
    for (int rep = 0; loop && rep < 30; rep++) {
        double t0 = thread_seconds_now(), ops = loop(&sink);
        best = MAX(best, ops / (thread_seconds_now() - t0) * 1e-9);
    }
    return best;
}

/* ---- shapes ---- */

typedef struct {
    const char *name;
    int64_t n, in, out;
} gemm_shape;

static const gemm_shape shapes[] = {
    {"vit.qkv", 1296, 1280, 3840},    {"vit.proj", 1296, 1280, 1280},    {"vit.fc1", 1296, 1280, 5120},
    {"vit.fc2", 1296, 5120, 1280},    {"merger.fc1", 324, 5120, 5120},   {"merger.fc2", 324, 5120, 1536},
    {"lm.q/o", 350, 1536, 1536},      {"lm.k/v", 350, 1536, 256},        {"lm.gate/up", 350, 1536, 8960},
    {"lm.down", 350, 8960, 1536},
    /* a short text query (16 tokens): weight-bound, on the 2B's and the 7B's widest matrices */
    {"lm.gate/up.text", 16, 1536, 8960}, {"7b.down.text", 16, 18944, 3584},
};

typedef struct {
    const char *name;
    int64_t n;
    int heads, kv_heads, head_dim;
    bool causal;
} attention_shape;

static const attention_shape attention_shapes[] = {
    {"vit.attention", 1296, 16, 16, 80, false},
    {"lm.attention", 350, 12, 2, 128, false},
    {"lm.attention.causal", 350, 12, 2, 128, true},
};

/* w [out][in] in the q8 and q4 strip layouts (section 3): q8 per block amax/127, round to nearest; q4
 * amax/8 as float16, nibbles q + 8 (FORMAT.md). Both buffers hold `bytes`. */
static void quantize_weights(const float *w, const gemm_shape *sh, uint8_t *w_q8, uint8_t *w_q4, size_t bytes) {
    int64_t blocks = sh->in / Q8_BLOCK;
    memset(w_q8, 0, bytes);
    for (int64_t j = 0; j < sh->out; j++)
        for (int64_t b = 0; b < blocks; b++) {
            const float *src = w + j * sh->in + b * Q8_BLOCK;
            uint8_t *block = w_q8 + ((j / Q8_STRIP) * blocks + b) * (int64_t)Q8_STRIP_BLOCK_BYTES;
            float amax = 0;
            for (int k = 0; k < Q8_BLOCK; k++) amax = MAX(amax, fabsf(src[k]));
            float d = amax / 127;
            for (int k = 0; k < Q8_BLOCK; k++)
                block[(k / 4 * Q8_STRIP + j % Q8_STRIP) * 4 + k % 4] = (uint8_t)(int8_t)(d > 0 ? lrintf(src[k] / d) : 0);
            memcpy(block + Q8_STRIP * Q8_BLOCK + (j % Q8_STRIP) * 4, &d, 4);
        }
    memset(w_q4, 0, bytes);
    for (int64_t j = 0; j < sh->out; j++)
        for (int64_t b = 0; b < blocks; b++) {
            const float *src = w + j * sh->in + b * Q8_BLOCK;
            uint8_t *block = w_q4 + ((j / Q8_STRIP) * blocks + b) * (int64_t)Q4_STRIP_BLOCK_BYTES;
            float amax = 0;
            for (int k = 0; k < Q8_BLOCK; k++) amax = MAX(amax, fabsf(src[k]));
            uint16_t h = 0;
            abc_f32_to_f16(amax / 8, &h);
            const float d = abc_f16_to_f32(h);
            for (int k = 0; k < Q8_BLOCK; k++) {
                long q = d > 0 ? lrintf(src[k] / d) : 0;
                q = MAX(-8L, MIN(7L, q));
                block[((k / 8) * Q8_STRIP + j % Q8_STRIP) * 4 + k % 4] |= (uint8_t)((q + 8) << (k % 8 < 4 ? 0 : 4));
            }
            memcpy(block + Q4_NIBBLE_BYTES + (j % Q8_STRIP) * 2, &h, 2);
        }
}

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
    }
}

/* --q4: q8 and q4 products alone, in turns (the order swapped each round), best of `reps` after a
 * warm-up; the shapes above, then the language model's widest matrices at few rows (a text query, the
 * decode-like end), where the weights' bytes bound the time. */
static const gemm_shape q4_sweep[] = {
    {"lm.gate/up", 1, 1536, 8960},  {"lm.gate/up", 4, 1536, 8960},  {"lm.gate/up", 8, 1536, 8960},
    {"lm.gate/up", 16, 1536, 8960}, {"lm.gate/up", 32, 1536, 8960}, {"lm.gate/up", 64, 1536, 8960},
    {"lm.down", 1, 8960, 1536},     {"lm.down", 8, 8960, 1536},     {"lm.down", 16, 8960, 1536},
    {"lm.down", 32, 8960, 1536},    {"lm.down", 64, 8960, 1536},    {"lm.down", 128, 8960, 1536},
    {"7b.down", 1, 18944, 3584},    {"7b.down", 8, 18944, 3584},    {"7b.down", 64, 18944, 3584},
};

static double process_seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* cpu_time: the process's CPU seconds instead of the wall clock; with one thread that is the product's
 * own work, robust to other processes sharing the core (at more threads it also counts the waits). */
#define Q4_COLD_BYTES ((size_t)96 << 20) /* past this machine's 32 MiB L3 */

static void q4_table(const int *threads, int n_threads, int path, int reps, int64_t max_rows, bool cpu_time,
                     float *x, const float *w, float *y, uint8_t *w_q8, uint8_t *w_q4, size_t bytes) {
    double (*now)(void) = cpu_time ? process_seconds_now : seconds_now;
    const size_t n_main = sizeof shapes / sizeof shapes[0], n_all = n_main + sizeof q4_sweep / sizeof q4_sweep[0];
    for (int ti = 0; ti < n_threads; ti++) {
        thread_pool *pool = NULL;
        if (thread_pool_new(threads[ti], &pool) != ABC_OK) return;
        pool->kernel_path = path;
        printf("\nthreads %d: q4 vs q8 (GOP/s: 2 per integer multiply-add; %s)\n", threads[ti],
               cpu_time ? "process CPU time" : "wall clock");
        printf("%-12s %5s %5s %5s %9s %8s %9s %8s %6s\n", "shape", "n", "in", "out", "q8 ms", "q8 GOP/s", "q4 ms",
               "q4 GOP/s", "q4/q8");
        int64_t quantized = 0;
        for (size_t s = 0; s < n_all; s++) {
            gemm_shape sh = s < n_main ? shapes[s] : q4_sweep[s - n_main];
            if (max_rows > 0) sh.n = MIN(sh.n, max_rows);
            if (quantized != sh.in * 1000003 + sh.out) {
                quantize_weights(w, &sh, w_q8, w_q4, bytes);
                quantized = sh.in * 1000003 + sh.out;
            }
            /* a model's weights come from memory, not from the cache: each call takes the next of enough
             * copies to pass Q4_COLD_BYTES */
            const size_t strip_blocks = (size_t)(ceil_div(sh.out, Q8_STRIP) * (sh.in / Q8_BLOCK));
            const size_t size8 = strip_blocks * Q8_STRIP_BLOCK_BYTES, size4 = strip_blocks * Q4_STRIP_BLOCK_BYTES;
            const int copies = (int)MIN((size_t)64, (Q4_COLD_BYTES + size4 - 1) / size4);
            uint8_t *cold8 = xmalloc_aligned(size8 * (size_t)copies), *cold4 = xmalloc_aligned(size4 * (size_t)copies);
            if (!cold8 || !cold4) return;
            for (int c = 0; c < copies; c++) {
                memcpy(cold8 + size8 * (size_t)c, w_q8, size8);
                memcpy(cold4 + size4 * (size_t)c, w_q4, size4);
            }
            /* activation outlier channels, as after the model's norms (the products set them aside) */
            for (int64_t i = 0; i < sh.n; i++) x[i * sh.in + 3] = 20.0f, x[i * sh.in + sh.in - 5] = -15.0f;
            double best[2] = {1e30, 1e30}, spent = 0;
            int call = 0;
            for (int r = -1; r < reps && (r < 3 || spent < 2.0); r++)
                for (int i = 0; i < 2; i++) {
                    const int which = (i + r + 1) % 2, c = call++ % copies;
                    tensor wq = {.dtype = which ? DT_Q4 : DT_Q8, .ndim = 2, .shape = {sh.out, sh.in, 1, 1},
                                 .data = which ? cold4 + size4 * (size_t)c : cold8 + size8 * (size_t)c};
                    double t0 = now();
                    matmul(pool, y, x, sh.n, &wq, NULL);
                    double dt = now() - t0;
                    spent += dt;
                    if (r >= 0) best[which] = MIN(best[which], dt);
                }
            free(cold8);
            free(cold4);
            const double ops = 2.0 * (double)sh.n * (double)sh.in * (double)sh.out * 1e-9;
            printf("%-12s %5lld %5lld %5lld %9.3f %8.1f %9.3f %8.1f %6.3f\n", sh.name, (long long)sh.n, (long long)sh.in,
                   (long long)sh.out, best[0] * 1e3, ops / best[0], best[1] * 1e3, ops / best[1], best[1] / best[0]);
        }
        thread_pool_free(pool);
    }
}

/* Best time of `reps` runs after one warm-up, stopping early once `budget` seconds are spent. */
#define TIME_BEST(result, reps, budget, stmt)                              \
    do {                                                                   \
        stmt;                                                              \
        double best_ = 1e30, spent_ = 0;                                   \
        for (int r_ = 0; r_ < (reps) && (r_ < 2 || spent_ < (budget)); r_++) { \
            double t0_ = seconds_now();                                    \
            stmt;                                                          \
            double dt_ = seconds_now() - t0_;                              \
            spent_ += dt_;                                                 \
            best_ = MIN(best_, dt_);                                       \
        }                                                                  \
        (result) = best_;                                                  \
    } while (0)

static int parse_threads(const char *s, int *out, int max) {
    int count = 0;
    while (*s && count < max) {
        int v = atoi(s);
        if (v > 0) out[count++] = v;
        const char *comma = strchr(s, ',');
        if (!comma) break;
        s = comma + 1;
    }
    return count;
}

int main(int argc, char **argv) {
    int threads[16] = {1, 2}, n_threads = 2, forced_path = -1, reps = 5;
    int64_t max_rows = 0; /* 0: the shapes as they are */
    bool json = false, quick = false, q4_only = false, cpu_time = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--q4")) q4_only = true;
        else if (!strcmp(argv[i], "--cpu-time")) cpu_time = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]), reps = MAX(1, reps);
        else if (!strcmp(argv[i], "--max-rows") && i + 1 < argc) max_rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) n_threads = parse_threads(argv[++i], threads, 16);
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *p = argv[++i];
            for (int k = 0; k < KERNEL_PATH_COUNT; k++)
                if (!strcmp(p, kernel_path_name(k))) forced_path = k;
            if (forced_path < 0) {
                fprintf(stderr, "unknown path %s\n", p);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--path scalar|avx2|avx512|neon|neon32] [--quick] [--json] [--max-rows N] [--q4 [--reps N] [--cpu-time]]\n", argv[0]);
            return 2;
        }
    }
    if (quick) reps = 2;
    setvbuf(stdout, NULL, _IOLBF, 0); /* each row as it is measured: a long emulated run may be cut short */
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    cpu_features features = cpu_features_detect();
    int path = forced_path >= 0 ? forced_path : kernel_path_best(&features);
    if (!kernel_path_supported(&features, path)) {
        fprintf(stderr, "path %s is not supported on this CPU\n", kernel_path_name(path));
        return 2;
    }
#ifdef BENCH_OPENBLAS
    const bool have_blas = true;
    /* The kernel set OpenBLAS runs: a ratio to OpenBLAS means little without it (OPENBLAS_CORETYPE=Haswell
     * runs its AVX2 kernels even on an AVX-512 CPU). */
    const char *blas_core = openblas_get_corename(), *blas_env = getenv("OPENBLAS_CORETYPE");
#else
    const bool have_blas = false;
#endif
    size_t max_x = 0, max_w = 0, max_y = 0, max_q8 = 0;
    for (size_t s = 0; s < sizeof q4_sweep / sizeof q4_sweep[0]; s++) {
        max_x = MAX(max_x, (size_t)(q4_sweep[s].n * q4_sweep[s].in));
        max_w = MAX(max_w, (size_t)(q4_sweep[s].in * q4_sweep[s].out));
        max_q8 = MAX(max_q8, (size_t)(ceil_div(q4_sweep[s].out, Q8_STRIP) * (q4_sweep[s].in / Q8_BLOCK)) * Q8_STRIP_BLOCK_BYTES);
        max_y = MAX(max_y, (size_t)(q4_sweep[s].n * q4_sweep[s].out));
    }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        max_x = MAX(max_x, (size_t)(shapes[s].n * shapes[s].in));
        max_w = MAX(max_w, (size_t)(shapes[s].in * shapes[s].out));
        max_q8 = MAX(max_q8, (size_t)(ceil_div(shapes[s].out, Q8_STRIP) * (shapes[s].in / Q8_BLOCK)) * Q8_STRIP_BLOCK_BYTES);
        max_y = MAX(max_y, (size_t)(shapes[s].n * shapes[s].out));
    }
    float *x = xmalloc_aligned(max_x * sizeof(float)), *w = xmalloc_aligned(max_w * sizeof(float));
    float *y = xmalloc_aligned(max_y * sizeof(float)), *y_blas = xmalloc_aligned(max_y * sizeof(float));
    uint16_t *w_bf16 = xmalloc_aligned(max_w * sizeof(uint16_t));
    uint8_t *w_q8 = xmalloc_aligned(max_q8), *w_q4 = xmalloc_aligned(max_q8); /* q4's strips are smaller */
    if (!x || !w || !y || !y_blas || !w_bf16 || !w_q8 || !w_q4) return 1;
    fill(x, max_x, 1);
    fill(w, max_w, 2);
    for (size_t i = 0; i < max_w; i++) {
        uint32_t b;
        memcpy(&b, &w[i], 4);
        w_bf16[i] = (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
    }

    if (q4_only) {
        printf("cpu: %s\npath: %s\n", cpu, kernel_path_name(path));
        q4_table(threads, n_threads, path, reps, max_rows, cpu_time, x, w, y, w_q8, w_q4, max_q8);
        free(x), free(w), free(y), free(y_blas), free(w_bf16), free(w_q8), free(w_q4);
        return 0;
    }
    double peak_per_thread = measure_peak_per_thread(path), int8_peak_per_thread = measure_int8_peak_per_thread(path, &features, false);
    double mix_peak_per_thread = measure_int8_peak_per_thread(path, &features, true);
    int64_t q8_quantized_in = 0; /* w_q8 holds the q8 image of w (strips, section 3) for this shape */
    if (json) {
        printf("{\n  \"cpu\": \"%s\",\n  \"path\": \"%s\",\n  \"online_cpus\": %d,\n  \"peak_gflops_per_thread\": %.2f,\n"
               "  \"int8_peak_gops_per_thread\": %.2f,\n  \"q8_kernel_mix_gops_per_thread\": %.2f,\n  \"openblas\": %s,\n",
               cpu, kernel_path_name(path), online_cpus(), peak_per_thread, int8_peak_per_thread, mix_peak_per_thread,
               have_blas ? "true" : "false");
#ifdef BENCH_OPENBLAS
        printf("  \"openblas_core\": \"%s\",\n  \"openblas_coretype_env\": \"%s\",\n", blas_core ? blas_core : "?",
               blas_env ? blas_env : "");
#endif
        printf("  \"results\": [\n");
    } else {
        printf("cpu: %s\npath: %s\n", cpu, kernel_path_name(path));
#ifdef BENCH_OPENBLAS
        printf("openblas: %s kernels (OPENBLAS_CORETYPE %s%s)\n", blas_core ? blas_core : "?",
               blas_env ? "= " : "unset", blas_env ? blas_env : "");
#endif
    }
    bool first = true;
    for (int ti = 0; ti < n_threads; ti++) {
        thread_pool *pool = NULL;
        if (thread_pool_new(threads[ti], &pool) != ABC_OK) return 1;
        pool->kernel_path = path;
        double peak = peak_per_thread * threads[ti];
#ifdef BENCH_OPENBLAS
        openblas_set_num_threads(threads[ti]);
#endif
        if (!json) {
            printf("\nthreads %d, FMA peak %.1f GFLOP/s (%.1f measured on one thread × %d)\n", threads[ti], peak,
                   peak_per_thread, threads[ti]);
            if (int8_peak_per_thread > 0)
                printf("int8 dot-product peak %.1f GOP/s (%.2f× the FMA peak)\n",
                       int8_peak_per_thread * threads[ti], int8_peak_per_thread / peak_per_thread);
            if (mix_peak_per_thread > 0)
                printf("q8 micro-kernel's instruction mix, operands in registers: %.1f GOP/s (%.2f× the FMA peak)\n",
                       mix_peak_per_thread * threads[ti], mix_peak_per_thread / peak_per_thread);
            printf("%-20s %5s %5s %5s %5s %9s %8s %6s %9s %8s %7s\n", "shape", "n", "in", "out", "dtype", "ms", "GFLOP/s",
                   "%peak", "blas ms", "blas GF", "ours/bl");
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            gemm_shape capped = shapes[s];
            if (max_rows > 0) capped.n = MIN(capped.n, max_rows);
            const gemm_shape *sh = &capped;
            double flops = 2.0 * (double)sh->n * (double)sh->in * (double)sh->out;
            /* ours f32 and bf16 in turns, then OpenBLAS, best of each. OpenBLAS's idle threads spin for a
             * while after each call and would steal the cores from ours, hence the separate phases and
             * the pause after them. */
            if (q8_quantized_in != sh->in * 1000003 + sh->out) {
                quantize_weights(w, sh, w_q8, w_q4, max_q8);
                q8_quantized_in = sh->in * 1000003 + sh->out;
            }
            tensor Ws[4] = {{.dtype = DT_F32, .ndim = 2, .shape = {sh->out, sh->in, 1, 1}, .data = w},
                            {.dtype = DT_BF16, .ndim = 2, .shape = {sh->out, sh->in, 1, 1}, .data = w_bf16},
                            {.dtype = DT_Q8, .ndim = 2, .shape = {sh->out, sh->in, 1, 1}, .data = w_q8},
                            {.dtype = DT_Q4, .ndim = 2, .shape = {sh->out, sh->in, 1, 1}, .data = w_q4}};
            double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
            for (int phase = have_blas ? 0 : 1; phase < 2; phase++) {
                double spent = 0;
                for (int r = -1; r < reps && (r < 2 || spent < 1.5); r++) { /* r = -1: warm-up */
                    for (int which = phase ? 1 : 0; which < (phase ? 5 : 1); which++) {
                        double t0 = seconds_now();
                        if (which > 0) matmul(pool, y, x, sh->n, &Ws[which - 1], NULL);
#ifdef BENCH_OPENBLAS
                        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)sh->n, (int)sh->out, (int)sh->in,
                                         1.0f, x, (int)sh->in, w, (int)sh->in, 0.0f, y_blas, (int)sh->out);
#endif
                        double dt = seconds_now() - t0;
                        spent += dt;
                        if (r >= 0) best[which] = MIN(best[which], dt);
                    }
                }
                if (phase == 0) {
                    struct timespec pause = {0, 300000000};
                    nanosleep(&pause, NULL);
                }
            }
            double t_blas = best[0];
            static const char *dtypes[4] = {"f32", "bf16", "q8", "q4"};
            for (int bf = 0; bf < 4; bf++) {
                double t = best[1 + bf];
                double gf = flops / t * 1e-9, ratio = have_blas ? t_blas / t : 0;
                if (json) {
                    printf("%s    {\"op\": \"matmul\", \"shape\": \"%s\", \"n\": %lld, \"in\": %lld, \"out\": %lld, "
                           "\"dtype\": \"%s\", \"threads\": %d, \"path\": \"%s\", \"ms\": %.3f, \"gflops\": %.2f, "
                           "\"peak_gflops\": %.2f, \"peak_fraction\": %.4f",
                           first ? "" : ",\n", sh->name, (long long)sh->n, (long long)sh->in, (long long)sh->out,
                           dtypes[bf], threads[ti], kernel_path_name(path), t * 1e3, gf, peak, gf / peak);
                    if (have_blas) printf(", \"openblas_ms\": %.3f, \"ratio_to_openblas\": %.4f", t_blas * 1e3, ratio);
                    printf("}");
                    first = false;
                } else {
                    printf("%-20s %5lld %5lld %5lld %5s %9.2f %8.1f %5.1f%%", sh->name, (long long)sh->n,
                           (long long)sh->in, (long long)sh->out, dtypes[bf], t * 1e3, gf, 100 * gf / peak);
                    if (have_blas) printf(" %9.2f %8.1f %6.1f%%", t_blas * 1e3, flops / t_blas * 1e-9, 100 * ratio);
                    printf("\n");
                }
            }
        }
        for (size_t s = 0; s < sizeof attention_shapes / sizeof attention_shapes[0]; s++) {
            attention_shape capped = attention_shapes[s];
            if (max_rows > 0) capped.n = MIN(capped.n, max_rows);
            const attention_shape *a = &capped;
            int64_t qw = (int64_t)a->heads * a->head_dim, kvw = (int64_t)a->kv_heads * a->head_dim;
            size_t need = (size_t)(a->n * (qw + 2 * kvw));
            if (need > max_x || (size_t)(a->n * qw) > max_y) continue;
            double flops = 4.0 * (double)a->n * (double)a->n * a->head_dim * a->heads * (a->causal ? 0.5 : 1.0);
            double t;
            TIME_BEST(t, reps, 1.0,
                      attention(pool, y, x, x + a->n * qw, x + a->n * (qw + kvw), a->n, a->heads, a->kv_heads,
                                a->head_dim, qw, kvw, a->causal));
            double gf = flops / t * 1e-9;
            if (json) {
                printf("%s    {\"op\": \"attention\", \"shape\": \"%s\", \"n\": %lld, \"heads\": %d, \"kv_heads\": %d, "
                       "\"head_dim\": %d, \"causal\": %s, \"threads\": %d, \"path\": \"%s\", \"ms\": %.3f, "
                       "\"gflops\": %.2f, \"peak_gflops\": %.2f, \"peak_fraction\": %.4f}",
                       first ? "" : ",\n", a->name, (long long)a->n, a->heads, a->kv_heads, a->head_dim,
                       a->causal ? "true" : "false", threads[ti], kernel_path_name(path), t * 1e3, gf, peak, gf / peak);
                first = false;
            } else {
                printf("%-20s %5lld %5d %5d %5s %9.2f %8.1f %5.1f%%\n", a->name, (long long)a->n, a->heads,
                       a->head_dim, "f32", t * 1e3, gf, 100 * gf / peak);
            }
        }
        thread_pool_free(pool);
    }
    if (json) printf("\n  ]\n}\n");
    free(x);
    free(w);
    free(y);
    free(y_blas);
    free(w_bf16);
    free(w_q8);
    free(w_q4);
    return 0;
}
