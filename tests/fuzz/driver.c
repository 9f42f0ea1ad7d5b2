/* Standalone fuzz driver for machines without libFuzzer: links with one tests/fuzz/fuzz_*.c target (its
 * LLVMFuzzerTestOneInput and optional LLVMFuzzerInitialize) under ASan/UBSan and runs it on its corpus,
 * then on random mutations of it (bit flips, byte values, interesting integers, dictionary words, cut,
 * duplicate and splice) until the time or run budget is spent. There is no coverage feedback, so it is a
 * regression runner and a blunt fuzzer; clang's libFuzzer is preferred when present (tests/fuzz/run_fuzz.sh).
 *
 * Understands a subset of libFuzzer's command line: files or directories of inputs, -max_total_time=S,
 * -runs=N, -dict=FILE, -seed=N, -max_len=N, -artifact_prefix=P; other -flags are ignored. Prints libFuzzer's
 * final-stats lines (stat::number_of_executed_units, stat::average_exec_per_sec) so the runner parses both.
 * On a sanitizer report the input being run is written to <artifact_prefix>crash-<hash> first. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define DRIVER_HAVE_DEATH_CALLBACK 1
#endif
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

typedef struct {
    uint8_t *data;
    size_t size;
} blob;

static blob *corpus, *dict;
static size_t n_corpus, cap_corpus, n_dict, cap_dict;
static const uint8_t *current;
static size_t current_size;
static char artifact_prefix[1024] = "./";
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void push(blob **v, size_t *n, size_t *cap, const uint8_t *data, size_t size) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *v = realloc(*v, *cap * sizeof **v);
        if (!*v) abort();
    }
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    if (size) memcpy(copy, data, size);
    (*v)[(*n)++] = (blob){copy, size};
}

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got);
    fclose(f);
    push(&corpus, &n_corpus, &cap_corpus, buf, len);
    free(buf);
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        add_path(sub);
    }
    closedir(d);
}

/* libFuzzer's dictionary format: one "quoted string" per line with \\, \" and \xNN escapes, optional name=. */
static void load_dict(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "driver: cannot read dictionary %s\n", path);
        exit(2);
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *q = strchr(line, '"');
        if (!q || line[0] == '#') continue;
        uint8_t word[4096];
        size_t n = 0;
        for (char *p = q + 1; *p && *p != '"' && n < sizeof word; p++) {
            if (*p == '\\' && p[1] == 'x' && p[2] && p[3]) {
                char hex[3] = {p[2], p[3], 0};
                word[n++] = (uint8_t)strtol(hex, NULL, 16);
                p += 3;
            } else if (*p == '\\' && p[1]) {
                word[n++] = (uint8_t)*++p;
            } else {
                word[n++] = (uint8_t)*p;
            }
        }
        if (n) push(&dict, &n_dict, &cap_dict, word, n);
    }
    fclose(f);
}

/* FNV-1a, for artifact names. */
static uint64_t hash(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

static void save_current(void) {
    if (!current) return;
    char path[1200];
    snprintf(path, sizeof path, "%scrash-%016llx", artifact_prefix, (unsigned long long)hash(current, current_size));
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(current, 1, current_size, f);
        fclose(f);
        fprintf(stderr, "driver: input written to %s\n", path);
    }
}

static void run_one(const uint8_t *data, size_t size) {
    current = data;
    current_size = size;
    LLVMFuzzerTestOneInput(data, size);
    current = NULL;
}

/* One random edit of buf[*len] (capacity max_len). */
static void mutate(uint8_t *buf, size_t *len, size_t max_len) {
    static const int64_t interesting[] = {0, 1, -1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                                          0x7FFFFFFF, (int64_t)0x80000000u, (int64_t)0xFFFFFFFFu, INT64_MAX};
    size_t n = *len;
    switch (rng() % 8) {
    case 0: /* flip a bit */
        if (n) buf[rng() % n] ^= (uint8_t)(1u << (rng() % 8));
        break;
    case 1: /* random byte */
        if (n) buf[rng() % n] = (uint8_t)rng();
        break;
    case 2: { /* an interesting integer of 1, 2, 4 or 8 bytes, either byte order */
        size_t w = (size_t)1 << (rng() % 4);
        if (n < w) break;
        uint64_t v = (uint64_t)interesting[rng() % (sizeof interesting / sizeof interesting[0])];
        size_t at = rng() % (n - w + 1);
        int big = rng() & 1;
        for (size_t i = 0; i < w; i++) buf[at + i] = (uint8_t)(v >> (8 * (big ? w - 1 - i : i)));
        break;
    }
    case 3: /* dictionary word, overwritten or inserted */
        if (n_dict) {
            const blob *w = &dict[rng() % n_dict];
            size_t at = n ? rng() % (n + 1) : 0;
            if ((rng() & 1) && n + w->size <= max_len) {
                memmove(buf + at + w->size, buf + at, n - at);
                *len = n + w->size;
            } else if (at + w->size > n) {
                break;
            }
            memcpy(buf + at, w->data, w->size);
        }
        break;
    case 4: /* cut a range */
        if (n) {
            size_t at = rng() % n, k = 1 + rng() % (n - at < 64 ? n - at : 64);
            memmove(buf + at, buf + at + k, n - at - k);
            *len = n - k;
        }
        break;
    case 5: /* truncate */
        if (n) *len = rng() % n;
        break;
    case 6: /* duplicate a range */
        if (n) {
            size_t at = rng() % n, k = 1 + rng() % (n - at < 64 ? n - at : 64);
            if (n + k > max_len) break;
            memmove(buf + at + k, buf + at, n - at);
            *len = n + k;
        }
        break;
    default: /* splice in bytes of another corpus entry */
        if (n_corpus && n) {
            const blob *o = &corpus[rng() % n_corpus];
            if (!o->size) break;
            size_t from = rng() % o->size, at = rng() % n, k = 1 + rng() % 256;
            if (k > o->size - from) k = o->size - from;
            if (k > n - at) k = n - at;
            memcpy(buf + at, o->data + from, k);
        }
        break;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double max_time = 0;
    long long max_runs = -1;
    size_t max_len = 0;
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "-max_total_time=", 16)) max_time = atof(a + 16);
        else if (!strncmp(a, "-runs=", 6)) max_runs = atoll(a + 6);
        else if (!strncmp(a, "-dict=", 6)) load_dict(a + 6);
        else if (!strncmp(a, "-seed=", 6)) rng_state = strtoull(a + 6, NULL, 10);
        else if (!strncmp(a, "-max_len=", 9)) max_len = (size_t)atoll(a + 9);
        else if (!strncmp(a, "-artifact_prefix=", 17)) snprintf(artifact_prefix, sizeof artifact_prefix, "%s", a + 17);
        else if (a[0] != '-') add_path(a);
    }
#ifdef DRIVER_HAVE_DEATH_CALLBACK
    __sanitizer_set_death_callback(save_current);
#endif
    double t0 = now();
    long long runs = 0;
    for (size_t i = 0; i < n_corpus && (max_runs < 0 || runs < max_runs); i++, runs++)
        run_one(corpus[i].data, corpus[i].size);
    fprintf(stderr, "driver: %zu corpus inputs replayed in %.2f s\n", n_corpus, now() - t0);
    if (!n_corpus) push(&corpus, &n_corpus, &cap_corpus, (const uint8_t *)"", 0);
    size_t longest = 0;
    for (size_t i = 0; i < n_corpus; i++) longest = corpus[i].size > longest ? corpus[i].size : longest;
    if (!max_len) max_len = longest + 4096;
    uint8_t *buf = malloc(max_len + 1);
    if (!buf) abort();
    while ((max_runs < 0 || runs < max_runs) && (max_time > 0 || max_runs >= 0) && (max_time <= 0 || now() - t0 < max_time)) {
        const blob *b = &corpus[rng() % n_corpus];
        size_t len = b->size < max_len ? b->size : max_len;
        memcpy(buf, b->data, len);
        for (int k = 1 + (int)(rng() % 4); k > 0; k--) mutate(buf, &len, max_len);
        /* The target sees an exactly sized heap copy, so ASan catches reads past its end. */
        uint8_t *input = malloc(len ? len : 1);
        if (!input) abort();
        memcpy(input, buf, len);
        run_one(input, len);
        free(input);
        runs++;
    }
    double t = now() - t0;
    printf("Done %lld runs in %.0f second(s)\n", runs, t);
    printf("stat::number_of_executed_units: %lld\n", runs);
    printf("stat::average_exec_per_sec:     %.0f\n", t > 0 ? runs / t : 0.0);
    free(buf);
    for (size_t i = 0; i < n_corpus; i++) free(corpus[i].data);
    for (size_t i = 0; i < n_dict; i++) free(dict[i].data);
    free(corpus);
    free(dict);
    return 0;
}
