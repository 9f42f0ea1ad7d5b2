/* Minimal test framework: each test binary runs named tests, a test passes when none of its CHECKs
 * failed; the binary ends with "RESULT <passed> <failed> <skipped>" which tests/run_tests.sh adds up.
 * A test that cannot run here (an optional tool or CPU feature is missing) calls TEST_SKIP(reason). */
#ifndef ABC_TEST_H
#define ABC_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int test_passed, test_failed, test_skipped, test_current_failures, test_current_skipped;
static const char *test_current_name = "";

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            test_current_failures++;                                                  \
            fprintf(stderr, "  FAIL [%s] %s:%d: %s: ", test_current_name, __FILE__, \
                    __LINE__, #cond);                                                 \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

/* Runs one named test (a function taking no arguments). */
#define RUN_TEST(fn) run_named_test(#fn, fn)

/* Marks the running test as skipped (it must then return): prints "SKIP name: reason". */
#define TEST_SKIP(...)                                           \
    do {                                                         \
        test_current_skipped = 1;                                \
        printf("SKIP %s: ", test_current_name);                 \
        printf(__VA_ARGS__);                                     \
        putchar('\n');                                           \
    } while (0)

/* ABC_TEST_ONLY="name1,name2": run only these tests (the others are not counted); `make mutate` uses it
 * to run the tests that should kill a mutant and no others. */
static int test_selected(const char *name) {
    const char *only = getenv("ABC_TEST_ONLY");
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (end != NULL);
    }
    return 0;
}

static void run_named_test(const char *name, void (*fn)(void)) {
    if (!test_selected(name)) return;
    test_current_name = name;
    test_current_failures = 0;
    test_current_skipped = 0;
    fn();
    if (test_current_skipped && test_current_failures == 0) {
        test_skipped++;
    } else if (test_current_failures == 0) {
        test_passed++;
        printf("ok   %s\n", name);
    } else {
        test_failed++;
        printf("FAIL %s (%d checks)\n", name, test_current_failures);
    }
    fflush(stdout);
}

/* Whole file, NUL-terminated (so text fixtures can be parsed in place); *len gets its size. NULL when
 * it cannot be opened or read. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

/* The lines of a text fixture table, without empty lines and '#' comments: their count (0 when the file
 * cannot be read), the lines in *out (free with test_free_lines). */
static inline int test_read_lines(const char *path, char ***out) {
    size_t len;
    char *text = test_read_file(path, &len);
    int n = 0, cap = 0;
    char **lines = NULL;
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        size_t line_len = end ? (size_t)(end - line) : strlen(line);
        if (line_len > 0 && line[0] != '#') {
            if (n == cap) lines = realloc(lines, sizeof *lines * (size_t)(cap = cap ? 2 * cap : 256));
            lines[n] = malloc(line_len + 1);
            memcpy(lines[n], line, line_len);
            lines[n++][line_len] = 0;
        }
        line = end ? end + 1 : line + line_len;
    }
    free(text);
    *out = lines;
    return n;
}

static inline void test_free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* max(a, b) for running maxima of finite values (not fmax: gcc 12 for aarch64 crashes at -O2 when it
 * vectorises an fmax reduction, tests/cross/run_cross.sh). */
static inline double test_max(double a, double b) { return a > b ? a : b; }

/* How n floats got compare with ref: max|got − ref|, max|ref| and their cosine (double sums). */
typedef struct {
    double max_abs, max_ref, cosine;
} test_diff;

static inline test_diff test_compare_f32(const float *got, const float *ref, size_t n) {
    test_diff d = {0, 0, 0};
    double dot = 0, ng = 0, nr = 0;
    for (size_t i = 0; i < n; i++) {
        d.max_abs = test_max(d.max_abs, fabs((double)got[i] - ref[i]));
        d.max_ref = test_max(d.max_ref, fabs((double)ref[i]));
        dot += (double)got[i] * ref[i];
        ng += (double)got[i] * got[i];
        nr += (double)ref[i] * ref[i];
    }
    d.cosine = dot / (sqrt(ng) * sqrt(nr) + 1e-300);
    return d;
}

/* Last line of every test binary; exit status 1 when anything failed. */
static int test_summary(void) {
    const char *only = getenv("ABC_TEST_ONLY");
    if (only && *only && test_passed + test_failed + test_skipped == 0) { /* a misspelt name must not pass */
        printf("FAIL ABC_TEST_ONLY=%s matched no test\n", only);
        test_failed++;
    }
    printf("RESULT %d %d %d\n", test_passed, test_failed, test_skipped);
    return test_failed ? 1 : 0;
}
#endif
