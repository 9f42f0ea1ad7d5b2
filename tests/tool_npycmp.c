/* tool_npycmp.c — compares two arrays for the end-to-end tests (tests/test_cli.sh).
 *
 *   tool_npycmp [--label NAME] [--exact] [--rel R] [--abs A] [--cos C] [--squeeze] [--prefix] [--any-int]
 *               ACTUAL REFERENCE
 *   tool_npycmp --sha256 FILE           SHA-256 of the array's data bytes (little-endian)
 *   tool_npycmp --shape FILE            prints "dtype d0,d1,..."
 *
 * ACTUAL and REFERENCE are .npy files, images (.png .jpg .jpeg .ppm .pgm) decoded with
 * abc_image_load into uint8 [H,W,3] — the fixtures' decoded references are PNGs — or .txt files of
 * whitespace-separated numbers, read as float32 [n] (what `abc embed` prints without -o). Shapes must be equal.
 * With no tolerance given the comparison is --exact (same dtype, every element equal). Tolerances:
 * --rel R: max|Δ| ≤ R·max|ref|; --abs A: max|Δ| ≤ A; --cos C: cosine similarity ≥ C. Prints one line of
 * numbers; exits 0 when within tolerance, 1 when not, 2 on a usage or file error.
 * Layout options (the Phi-3.5-V fixture's arrays, docs/testing.md#fixtures): --squeeze drops leading dimensions of size 1
 * from both arrays (the reference's batch dimension); --prefix compares ACTUAL with the first rows (along
 * dimension 0) of a REFERENCE that has more of them (the processor's zero-padding image slots);
 * --any-int lets --exact compare integer arrays of different widths (int32 ids vs int64) by value.
 */
#define _POSIX_C_SOURCE 200809L
#include "abc.h"
#include "../cli/npy.h"
#include "sha256.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m) return false;
    for (size_t k = 0; k < m; k++) {
        char c = s[n - m + k];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != suffix[k]) return false;
    }
    return true;
}

static bool is_image_path(const char *path) {
    return has_suffix(path, ".png") || has_suffix(path, ".jpg") || has_suffix(path, ".jpeg") ||
           has_suffix(path, ".ppm") || has_suffix(path, ".pgm");
}

/* Whitespace-separated numbers as float32 [n] (printed with %.9g they read back exactly). */
static bool load_text(const char *path, npy_array *a) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tool_npycmp: cannot open '%s'\n", path);
        return false;
    }
    memset(a, 0, sizeof *a);
    size_t cap = 0;
    double v;
    int got;
    bool ok = true;
    while ((got = fscanf(f, "%lf", &v)) == 1) {
        if (a->count == cap) {
            cap = cap ? cap * 2 : 64;
            float *bigger = realloc(a->data, cap * sizeof *bigger);
            if (!bigger) {
                ok = false;
                break;
            }
            a->data = bigger;
        }
        ((float *)a->data)[a->count++] = (float)v;
    }
    if (got != EOF || ferror(f)) ok = false;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "tool_npycmp: '%s' is not a list of numbers\n", path);
        npy_free(a);
        return false;
    }
    a->dtype = NPY_F32;
    a->ndim = 1;
    a->shape[0] = (int64_t)a->count;
    return true;
}

/* Loads a .npy, a .txt list of numbers or an image (as uint8 [H,W,3]). */
static bool load_array(const char *path, npy_array *a) {
    char msg[512];
    if (has_suffix(path, ".txt")) return load_text(path, a);
    if (!is_image_path(path)) {
        if (npy_read(path, a, msg, sizeof msg) == 0) return true;
        fprintf(stderr, "tool_npycmp: %s\n", msg);
        return false;
    }
    abc_image img;
    abc_error err = {0};
    abc_status st = abc_image_load(path, 0, &img, &err);
    if (st != ABC_OK) {
        fprintf(stderr, "tool_npycmp: %s: %s: %s\n", path, abc_status_string(st), err.message);
        return false;
    }
    memset(a, 0, sizeof *a);
    a->dtype = NPY_U8;
    a->ndim = 3;
    a->shape[0] = img.height;
    a->shape[1] = img.width;
    a->shape[2] = 3;
    a->count = (size_t)img.width * (size_t)img.height * 3;
    a->data = malloc(a->count ? a->count : 1);
    if (a->data) memcpy(a->data, img.rgb, a->count);
    abc_image_free(&img);
    if (!a->data) {
        fprintf(stderr, "tool_npycmp: out of memory\n");
        return false;
    }
    return true;
}

static void shape_string(const npy_array *a, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < a->ndim && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? "," : "", (long long)a->shape[k]);
}

static bool same_shape(const npy_array *a, const npy_array *b) {
    if (a->ndim != b->ndim) return false;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return false;
    return true;
}

static int print_sha256(const char *path) {
    npy_array a;
    if (!load_array(path, &a)) return 2;
    /* The fixtures hash little-endian bytes; all supported hosts are little-endian. */
    char hex[65];
    sha256_hex(a.data, a.count * npy_dtype_size(a.dtype), hex);
    printf("%s\n", hex);
    npy_free(&a);
    return 0;
}

static int print_shape(const char *path) {
    npy_array a;
    if (!load_array(path, &a)) return 2;
    char shape[256];
    shape_string(&a, shape, sizeof shape);
    printf("%s %s\n", npy_dtype_name(a.dtype), shape);
    npy_free(&a);
    return 0;
}

static bool parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == 0;
}

static bool is_int_dtype(npy_dtype t) { return t == NPY_I32 || t == NPY_I64 || t == NPY_U8; }

/* Drops leading dimensions of size 1 (keeping one). */
static void squeeze_leading(npy_array *a) {
    while (a->ndim > 1 && a->shape[0] == 1) {
        memmove(a->shape, a->shape + 1, (size_t)(a->ndim - 1) * sizeof a->shape[0]);
        a->ndim--;
    }
}

/* Cuts b to its first a->shape[0] rows when the other dimensions agree and b has at least as many. */
static void cut_to_prefix(const npy_array *a, npy_array *b) {
    if (a->ndim != b->ndim || a->ndim < 1 || a->shape[0] > b->shape[0]) return;
    for (int k = 1; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return;
    b->count = a->count; /* rows are contiguous: the prefix is the first a->count elements */
    b->shape[0] = a->shape[0];
}

static int usage(void) {
    fputs("usage: tool_npycmp [--label NAME] [--exact] [--rel R] [--abs A] [--cos C] [--squeeze] [--prefix]\n"
          "                   [--any-int] ACTUAL REFERENCE\n"
          "       tool_npycmp --sha256 FILE | --shape FILE\n",
          stderr);
    return 2;
}

int main(int argc, char **argv) {
    const char *label = NULL, *files[2] = {NULL, NULL};
    double rel = -1, abs_tol = -1, cos_min = -2;
    bool exact = false, squeeze = false, prefix = false, any_int = false;
    int n_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool has_next = i + 1 < argc;
        if (strcmp(arg, "--sha256") == 0 && has_next && argc == 3) return print_sha256(argv[i + 1]);
        if (strcmp(arg, "--shape") == 0 && has_next && argc == 3) return print_shape(argv[i + 1]);
        if (strcmp(arg, "--label") == 0 && has_next) label = argv[++i];
        else if (strcmp(arg, "--exact") == 0) exact = true;
        else if (strcmp(arg, "--squeeze") == 0) squeeze = true;
        else if (strcmp(arg, "--prefix") == 0) prefix = true;
        else if (strcmp(arg, "--any-int") == 0) any_int = true;
        else if (strcmp(arg, "--rel") == 0 && has_next) {
            if (!parse_double(argv[++i], &rel)) return usage();
        } else if (strcmp(arg, "--abs") == 0 && has_next) {
            if (!parse_double(argv[++i], &abs_tol)) return usage();
        } else if (strcmp(arg, "--cos") == 0 && has_next) {
            if (!parse_double(argv[++i], &cos_min)) return usage();
        } else if (arg[0] != '-' && n_files < 2) files[n_files++] = arg;
        else return usage();
    }
    if (n_files != 2) return usage();
    if (rel < 0 && abs_tol < 0 && cos_min < -1) exact = true;
    if (!label) label = files[0];

    npy_array a, b;
    if (!load_array(files[0], &a)) return 2;
    if (!load_array(files[1], &b)) {
        npy_free(&a);
        return 2;
    }
    if (squeeze) {
        squeeze_leading(&a);
        squeeze_leading(&b);
    }
    const int64_t reference_rows = b.ndim > 0 ? b.shape[0] : 1;
    if (prefix) cut_to_prefix(&a, &b);
    char sa[256], sb[256];
    shape_string(&a, sa, sizeof sa);
    shape_string(&b, sb, sizeof sb);
    int rc = 0;
    if (!same_shape(&a, &b)) {
        printf("%s: FAIL shape [%s] %s, reference [%s] %s\n", label, sa, npy_dtype_name(a.dtype), sb,
               npy_dtype_name(b.dtype));
        rc = 1;
        goto done;
    }
    if (exact && a.dtype != b.dtype && !(any_int && is_int_dtype(a.dtype) && is_int_dtype(b.dtype))) {
        printf("%s: FAIL dtype %s, reference %s\n", label, npy_dtype_name(a.dtype), npy_dtype_name(b.dtype));
        rc = 1;
        goto done;
    }

    double max_diff = 0, max_ref = 0, dot = 0, na = 0, nb = 0;
    size_t mismatches = 0, first = 0;
    bool nan_seen = false;
    for (size_t k = 0; k < a.count; k++) {
        double x = npy_get(&a, k), y = npy_get(&b, k);
        if (isnan(x) || isnan(y)) nan_seen = true;
        if (x != y) {
            if (mismatches++ == 0) first = k;
        }
        double d = fabs(x - y);
        if (d > max_diff) max_diff = d;
        if (fabs(y) > max_ref) max_ref = fabs(y);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    double cosine = (na > 0 && nb > 0) ? dot / (sqrt(na) * sqrt(nb)) : (na == nb ? 1.0 : 0.0);
    double ratio = max_ref > 0 ? max_diff / max_ref : max_diff;

    bool ok = !nan_seen;
    if (exact) ok = ok && mismatches == 0;
    if (rel >= 0) ok = ok && max_diff <= rel * max_ref;
    if (abs_tol >= 0) ok = ok && max_diff <= abs_tol;
    if (cos_min >= -1) ok = ok && cosine >= cos_min;

    printf("%s: %s [%s] %s max|d|=%.3g max|ref|=%.3g max|d|/max|ref|=%.3g cos=%.9f mismatches=%zu/%zu",
           label, ok ? "ok" : "FAIL", sa, npy_dtype_name(a.dtype), max_diff, max_ref, ratio, cosine,
           mismatches, a.count);
    if (exact && mismatches)
        printf(" first at %zu: %.9g vs %.9g", first, npy_get(&a, first), npy_get(&b, first));
    if (prefix && b.ndim > 0 && b.shape[0] < reference_rows)
        printf(" (first %lld of the reference's %lld rows)", (long long)b.shape[0], (long long)reference_rows);
    if (nan_seen) printf(" NaN");
    putchar('\n');
    rc = ok ? 0 : 1;
done:
    npy_free(&a);
    npy_free(&b);
    return rc;
}
