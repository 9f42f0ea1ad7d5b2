
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
    bool neon;       /* Advanced SIMD (always on aarch64) */
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
#endif
#elif defined(__ARM_NEON)
    f.neon = true;
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
    case KERNEL_NEON: /* the NEON kernels are aarch64 only; 32-bit Arm runs the scalar ones */
#if defined(__aarch64__)
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

/* For logs and benchmarks (the library itself may not call it). */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static const char *kernel_path_name(int path) {
    switch (path) {
    case KERNEL_SCALAR: return "scalar";
    case KERNEL_AVX2: return "avx2";
    case KERNEL_AVX512: return "avx512";
    case KERNEL_NEON: return "neon";
    default: return "?";
    }
}

/* ---- thread pool ---- */

#define POOL_MAX_THREADS 256
/* Per-thread scratch for the kernels (packed weight panels, attention tiles), allocated once. */
#define POOL_SCRATCH_FLOATS ((size_t)320 * 1024)
/* Spin iterations before a waiting thread sleeps on the condition variable. */
#define POOL_SPIN_ITERATIONS 20000

struct thread_pool {
    int n_threads; /* workers + the caller */
    pthread_t *workers;
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
    cpu_features features;
    int kernel_path; /* KERNEL_*; tests may force a supported path */
    float **scratch; /* [n_threads] arrays of POOL_SCRATCH_FLOATS, 64-byte aligned */
    size_t scratch_floats;
    /* one operation's operands for all threads (attention's K/V panels, q8's quantized x): kept, so
     * that large inputs do not map and fault in fresh pages every layer */
    workspace shared;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
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

typedef struct {
    thread_pool *pool;
    int thread;
} pool_worker_arg;

static void *pool_worker_main(void *p) {
    thread_pool *pool = ((pool_worker_arg *)p)->pool;
    int thread = ((pool_worker_arg *)p)->thread;
    free(p);
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

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return (int)MIN(n, POOL_MAX_THREADS);
}

static abc_status thread_pool_new(int n_threads, thread_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = online_cpus();
    if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
    thread_pool *pool = xcalloc(1, sizeof *pool);
    if (!pool) return ABC_ERR_NOMEM;
    pool->n_threads = n_threads;
    pool->features = cpu_features_detect();
    pool->kernel_path = kernel_path_best(&pool->features);
    pool->scratch_floats = POOL_SCRATCH_FLOATS;
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
    if (!pool->scratch || !pool->workers) goto fail;
    for (int t = 0; t < n_threads; t++) {
        pool->scratch[t] = xmalloc_aligned(pool->scratch_floats * sizeof(float));
        if (!pool->scratch[t]) goto fail;
    }
    for (int t = 1; t < n_threads; t++) {
        pool_worker_arg *arg = xmalloc(sizeof *arg);
        if (!arg) goto fail;
        arg->pool = pool;
        arg->thread = t;
        if (pthread_create(&pool->workers[t - 1], NULL, pool_worker_main, arg) != 0) {
            free(arg);
            goto fail;
        }
        pool->n_started++;
    }
    *out = pool;
    return ABC_OK;
fail:
    thread_pool_free(pool);
    return ABC_ERR_NOMEM;
}

static void thread_pool_free(thread_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    pool->stop = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int t = 0; t < pool->n_started; t++) pthread_join(pool->workers[t], NULL);
    if (pool->scratch)
        for (int t = 0; t < pool->n_threads; t++) free(pool->scratch[t]);
    free(pool->scratch);
    workspace_free(&pool->shared);
    free(pool->workers);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
}

static int thread_pool_size(const thread_pool *pool) { return pool ? pool->n_threads : 1; }

static void thread_pool_run(thread_pool *pool, int n_tasks, pool_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
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
}
