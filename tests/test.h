/* Minimal test framework: each test binary runs named tests, a test passes when none of its CHECKs
 * failed; the binary ends with "RESULT <passed> <failed>" which tests/run_tests.sh adds up. */
#ifndef ABC_TEST_H
#define ABC_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_current_failures;
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

static void run_named_test(const char *name, void (*fn)(void)) {
    test_current_name = name;
    test_current_failures = 0;
    fn();
    if (test_current_failures == 0) {
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

/* max(a, b) for running maxima of finite values (not fmax: gcc 12 for aarch64 crashes at -O2 when it
 * vectorises an fmax reduction, tests/cross/run_cross.sh). */
static inline double test_max(double a, double b) { return a > b ? a : b; }

/* Last line of every test binary; exit status 1 when anything failed. */
static int test_summary(void) {
    printf("RESULT %d %d\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
#endif
