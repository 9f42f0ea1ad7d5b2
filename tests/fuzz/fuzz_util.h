/* Shared by the fuzz targets (tests/fuzz/fuzz_*.c): a private scratch directory for targets whose code
 * under test reads files, and FUZZ_ASSERT for properties that must hold (a failure aborts, which both
 * libFuzzer and tests/fuzz/driver.c report as a finding, with the input saved). */
#ifndef ABC_FUZZ_UTIL_H
#define ABC_FUZZ_UTIL_H
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_ASSERT(cond, ...)                                                  \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FUZZ_ASSERT %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

static char fuzz_dir[256];

static inline void fuzz_dir_remove(void) {
    if (!fuzz_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

/* $TMPDIR (else /dev/shm, else /tmp)/abc-fuzz-XXXXXX, removed at exit. */
static inline const char *fuzz_scratch_dir(void) {
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/abc-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_dir_remove);
    return fuzz_dir;
}

/* scratch/name, holding exactly data[size]. The file stays open between calls and is overwritten in
 * place, then cut to size: cheaper than re-creating it (tmpfs frees and re-allocates its pages). */
static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    static char paths[4][512];
    static int fds[4] = {-1, -1, -1, -1};
    int k = 0;
    while (k < 4 && fds[k] >= 0 && strcmp(strrchr(paths[k], '/') + 1, name) != 0) k++;
    FUZZ_ASSERT(k < 4, "more than 4 scratch files");
    if (fds[k] < 0) {
        snprintf(paths[k], sizeof paths[k], "%s/%s", fuzz_scratch_dir(), name);
        fds[k] = open(paths[k], O_RDWR | O_CREAT | O_TRUNC, 0600);
        FUZZ_ASSERT(fds[k] >= 0, "cannot create %s", paths[k]);
    }
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fds[k], data + done, size - done, (off_t)done);
        FUZZ_ASSERT(n > 0, "cannot write %s", paths[k]);
        done += (size_t)n;
    }
    FUZZ_ASSERT(ftruncate(fds[k], (off_t)size) == 0, "cannot truncate %s", paths[k]);
    return paths[k];
}
#endif
