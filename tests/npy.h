/* npy.h — a minimal NumPy .npy reader for the tests (C order, little-endian float32 / int32 / int64 /
 * uint8, format versions 1–3). Header-only: every function is static and prefixed test_npy_. */
#ifndef ABC_TEST_NPY_H
#define ABC_TEST_NPY_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Returns 0 on success, -1 (with a message on stderr) when the file is missing or not understood. */
static int test_npy_read(const char *path, test_npy *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "npy: cannot open %s\n", path);
        return -1;
    }
    unsigned char pre[12];
    int rc = -1;
    char *header = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) goto done;
    size_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else {
        if (fread(pre + 10, 1, 2, f) != 2) goto done;
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > 65536) goto done;
    header = malloc(hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen) goto done;
    header[hlen] = 0;
    const char *d = strstr(header, "'descr':");
    const char *fo = strstr(header, "'fortran_order':");
    const char *s = strstr(header, "'shape':");
    if (!d || !fo || !s || strstr(fo, "True") == fo + 17) goto done;
    size_t esize;
    if (strstr(d, "'<f4'") == d + 9) out->dtype = 'f', esize = 4;
    else if (strstr(d, "'<i4'") == d + 9) out->dtype = 'i', esize = 4;
    else if (strstr(d, "'<i8'") == d + 9) out->dtype = 'l', esize = 8;
    else if (strstr(d, "'|u1'") == d + 9) out->dtype = 'u', esize = 1;
    else goto done;
    const char *p = strchr(s, '(');
    if (!p) goto done;
    p++;
    out->count = 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || out->ndim == 4) goto done;
        out->shape[out->ndim++] = v;
        out->count *= (size_t)v;
        p = end;
    }
    out->data = malloc(out->count * esize + 1);
    if (!out->data || fread(out->data, esize, out->count, f) != out->count) goto done;
    rc = 0;
done:
    if (rc != 0) {
        fprintf(stderr, "npy: cannot read %s\n", path);
        test_npy_free(out);
    }
    free(header);
    fclose(f);
    return rc;
}
#endif
