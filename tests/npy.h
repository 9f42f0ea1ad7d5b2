/* npy.h — the tests' view of cli/npy.c, the one .npy reader of the project (the command line uses the
 * same code): test_npy_read fills a small struct with the dtype as a letter, which the tests compare
 * against. Header-only for the single-translation-unit tests (tests/test_*.c include abc.c). */
#ifndef ABC_TEST_NPY_H
#define ABC_TEST_NPY_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cli/npy.c"

typedef struct {
    char dtype;        /* 'f' float32, 'i' int32, 'l' int64, 'u' uint8 */
    int ndim;
    int64_t shape[4];
    size_t count;
    void *data;        /* malloc'ed; test_npy_free */
} test_npy;

static void test_npy_free(test_npy *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Returns 0 on success, -1 (with a message on stderr) when the file is missing, not understood, of
 * another dtype than the four above or of more than 4 dimensions. */
static int test_npy_read(const char *path, test_npy *out) {
    memset(out, 0, sizeof *out);
    npy_array a;
    char err[512];
    if (npy_read(path, &a, err, sizeof err) != 0) {
        fprintf(stderr, "npy: %s\n", err);
        return -1;
    }
    static const char letters[] = {[NPY_F32] = 'f', [NPY_F64] = 0, [NPY_I32] = 'i', [NPY_I64] = 'l', [NPY_U8] = 'u'};
    if (!letters[a.dtype] || a.ndim > 4) {
        fprintf(stderr, "npy: %s: %s with %d dimensions is not a test fixture type\n", path,
                npy_dtype_name(a.dtype), a.ndim);
        npy_free(&a);
        return -1;
    }
    out->dtype = letters[a.dtype];
    out->ndim = a.ndim;
    for (int k = 0; k < a.ndim; k++) out->shape[k] = a.shape[k];
    out->count = a.count;
    out->data = a.data; /* ownership moves: npy_free would only free it */
    return 0;
}
#endif
