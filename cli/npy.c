/* npy.c — NumPy .npy reader and writer (see npy.h). */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER (1u << 20) /* real headers are < 200 bytes; refuse absurd ones */

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

size_t npy_dtype_size(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32: return 4;
    case NPY_F64: return 8;
    case NPY_I32: return 4;
    case NPY_I64: return 8;
    case NPY_U8: return 1;
    }
    return 0;
}

const char *npy_dtype_name(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32: return "float32";
    case NPY_F64: return "float64";
    case NPY_I32: return "int32";
    case NPY_I64: return "int64";
    case NPY_U8: return "uint8";
    }
    return "?";
}

/* The descr of `dtype` in host byte order ("<f4" on little-endian machines). */
static void descr_for(npy_dtype dtype, char out[4]) {
    static const char kind[] = {'f', 'f', 'i', 'i', 'u'};
    out[0] = dtype == NPY_U8 ? '|' : (host_is_little_endian() ? '<' : '>');
    out[1] = kind[dtype];
    out[2] = (char)('0' + npy_dtype_size(dtype));
    out[3] = 0;
}

static bool element_count(int ndim, const int64_t *shape, size_t *count) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX) return false;
        size_t d = (size_t)shape[i];
        if (d && n > SIZE_MAX / d) return false;
        n *= d;
    }
    *count = n;
    return true;
}

int npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
              char *err, size_t errlen) {
    size_t count, esize = npy_dtype_size(dtype);
    if (ndim < 0 || ndim > NPY_MAX_DIMS || !element_count(ndim, shape, &count) ||
        count > SIZE_MAX / (esize ? esize : 1)) {
        set_err(err, errlen, "cannot write '%s': invalid array shape", path);
        return -1;
    }
    char descr[4];
    descr_for(dtype, descr);

    char header[512];
    int len = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        len += snprintf(header + len, sizeof header - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)shape[i]);
    len += snprintf(header + len, sizeof header - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    /* Pad with spaces and a final newline so the data starts 64-byte aligned (as NumPy does). */
    int total = 10 + len + 1;
    int padded = (total + 63) / 64 * 64;
    memset(header + len, ' ', (size_t)(padded - total));
    len += padded - total;
    header[len++] = '\n';

    uint8_t prefix[10];
    memcpy(prefix, NPY_MAGIC, NPY_MAGIC_LEN);
    prefix[6] = 1;  /* version 1.0 */
    prefix[7] = 0;
    prefix[8] = (uint8_t)(len & 0xff);
    prefix[9] = (uint8_t)(len >> 8);

    /* Written to PATH.tmp and renamed over PATH, so PATH is always complete or absent; a path that exists
     * and is not a regular file (/dev/stdout, a FIFO) is written in place. */
    struct stat st;
    const bool in_place = stat(path, &st) == 0 && !S_ISREG(st.st_mode);
    size_t plen = strlen(path);
    char *tmp = in_place ? NULL : malloc(plen + 5);
    if (!in_place && !tmp) {
        set_err(err, errlen, "cannot write '%s': out of memory", path);
        return -1;
    }
    if (tmp) {
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".tmp", 5);
    }
    const char *target = tmp ? tmp : path;
    FILE *f = fopen(target, "wb");
    if (!f) {
        set_err(err, errlen, "cannot create '%s': %s", target, strerror(errno));
        free(tmp);
        return -1;
    }
    bool ok = fwrite(prefix, 1, sizeof prefix, f) == sizeof prefix &&
              fwrite(header, 1, (size_t)len, f) == (size_t)len &&
              (count == 0 || fwrite(data, esize, count, f) == count);
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && tmp && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        set_err(err, errlen, "cannot write '%s': %s", path, strerror(saved));
        if (tmp) remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* ---- reading: a small parser for the header's Python dict literal ---- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool accept(cursor *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string ('...' or "...") without escapes, copied into out[cap]. */
static bool parse_quoted(cursor *c, char *out, size_t cap) {
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= cap) return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    out[n] = 0;
    return true;
}

static bool parse_word(cursor *c, const char *word) {
    skip_space(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static bool parse_shape(cursor *c, int *ndim, int64_t *shape) {
    if (!accept(c, '(')) return false;
    *ndim = 0;
    for (;;) {
        if (accept(c, ')')) return true;
        skip_space(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return false;
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 long suffix */
        if (*ndim == NPY_MAX_DIMS) return false;
        shape[(*ndim)++] = v;
        if (!accept(c, ',')) {
            if (!accept(c, ')')) return false;
            return true;
        }
    }
}

static bool parse_descr(const char *descr, npy_dtype *dtype, bool *swap) {
    if (strlen(descr) != 3) return false;
    char order = descr[0], kind = descr[1], size = descr[2];
    bool little = host_is_little_endian();
    if (order == '<') *swap = !little;
    else if (order == '>') *swap = little;
    else if (order == '|' || order == '=') *swap = false;
    else return false;
    if (kind == 'f' && size == '4') *dtype = NPY_F32;
    else if (kind == 'f' && size == '8') *dtype = NPY_F64;
    else if (kind == 'i' && size == '4') *dtype = NPY_I32;
    else if (kind == 'i' && size == '8') *dtype = NPY_I64;
    else if (kind == 'u' && size == '1') *dtype = NPY_U8;
    else return false;
    return true;
}

static bool parse_header(const char *text, size_t len, npy_array *a, bool *swap, bool *fortran,
                         char *what, size_t whatlen) {
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false;
    if (!accept(&c, '{')) goto bad;
    while (!accept(&c, '}')) {
        char key[32], value[32];
        if (!parse_quoted(&c, key, sizeof key) || !accept(&c, ':')) goto bad;
        if (strcmp(key, "descr") == 0) {
            if (!parse_quoted(&c, value, sizeof value)) goto bad;
            if (!parse_descr(value, &a->dtype, swap)) {
                snprintf(what, whatlen, "unsupported dtype '%s' (float32/64, int32/64, uint8 only)", value);
                return false;
            }
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&c, "True")) *fortran = true;
            else if (parse_word(&c, "False")) *fortran = false;
            else goto bad;
            have_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (!parse_shape(&c, &a->ndim, a->shape)) goto bad;
            have_shape = true;
        } else {
            goto bad;
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}')) goto bad;
            break;
        }
    }
    if (have_descr && have_order && have_shape) return true;
bad:
    snprintf(what, whatlen, "malformed header");
    return false;
}

static void byte_swap(void *data, size_t count, size_t esize) {
    uint8_t *p = data;
    for (size_t i = 0; i < count; i++, p += esize)
        for (size_t j = 0; j < esize / 2; j++) {
            uint8_t t = p[j];
            p[j] = p[esize - 1 - j];
            p[esize - 1 - j] = t;
        }
}

/* Opens a regular file only: O_NONBLOCK so that a FIFO never blocks the open; FIFOs, devices and
 * directories are refused. *size receives the file's size, against which every size in the header is
 * checked before anything is allocated. */
static FILE *open_regular(const char *path, uint64_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "cannot read '%s': not a regular file", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    *size = (uint64_t)st.st_size;
    return f;
}

int npy_read(const char *path, npy_array *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    uint64_t file_size = 0;
    FILE *f = open_regular(path, &file_size, err, errlen);
    if (!f) return -1;
    char *header = NULL;
    void *data = NULL;
    char what[160] = "truncated file";
    uint8_t prefix[12];
    if (fread(prefix, 1, 10, f) != 10) goto fail;
    if (memcmp(prefix, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        snprintf(what, sizeof what, "not a .npy file (bad magic)");
        goto fail;
    }
    size_t header_len, prefix_len = 10;
    if (prefix[6] == 1) {
        header_len = prefix[8] | (size_t)prefix[9] << 8;
    } else if (prefix[6] == 2 || prefix[6] == 3) {
        if (fread(prefix + 10, 1, 2, f) != 2) goto fail;
        header_len = prefix[8] | (size_t)prefix[9] << 8 | (size_t)prefix[10] << 16 | (size_t)prefix[11] << 24;
        prefix_len = 12;
    } else {
        snprintf(what, sizeof what, "unsupported .npy version %d.%d", prefix[6], prefix[7]);
        goto fail;
    }
    if (header_len > NPY_MAX_HEADER) {
        snprintf(what, sizeof what, "header too large");
        goto fail;
    }
    if (header_len > file_size - prefix_len) {
        snprintf(what, sizeof what, "truncated header (%zu bytes announced, %llu in the file)", header_len,
                 (unsigned long long)(file_size - prefix_len));
        goto fail;
    }
    header = malloc(header_len + 1);
    if (!header) {
        snprintf(what, sizeof what, "out of memory");
        goto fail;
    }
    if (fread(header, 1, header_len, f) != header_len) goto fail;
    header[header_len] = 0;

    bool swap = false, fortran = false;
    if (!parse_header(header, header_len, out, &swap, &fortran, what, sizeof what)) goto fail;
    size_t esize = npy_dtype_size(out->dtype);
    if (!element_count(out->ndim, out->shape, &out->count) || out->count > SIZE_MAX / esize) {
        snprintf(what, sizeof what, "array too large");
        goto fail;
    }
    int non_trivial = 0;
    for (int i = 0; i < out->ndim; i++) non_trivial += out->shape[i] > 1;
    if (fortran && non_trivial > 1) {
        snprintf(what, sizeof what, "Fortran-order arrays are not supported");
        goto fail;
    }
    /* The shape must match the bytes present before anything that large is allocated. */
    uint64_t have = file_size - prefix_len - header_len;
    if ((uint64_t)out->count * esize != have) {
        snprintf(what, sizeof what, "%s data (the shape needs %zu elements of %zu bytes, the file holds %llu bytes)",
                 (uint64_t)out->count * esize > have ? "truncated" : "unexpected bytes after the", out->count, esize,
                 (unsigned long long)have);
        goto fail;
    }
    data = malloc(out->count ? out->count * esize : 1);
    if (!data) {
        snprintf(what, sizeof what, "out of memory for %zu elements", out->count);
        goto fail;
    }
    if (fread(data, esize, out->count, f) != out->count) {
        snprintf(what, sizeof what, "truncated data (expected %zu elements)", out->count);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        snprintf(what, sizeof what, "unexpected bytes after the data");
        goto fail;
    }
    if (swap) byte_swap(data, out->count, esize);
    fclose(f);
    free(header);
    out->data = data;
    return 0;
fail:
    if (ferror(f)) snprintf(what, sizeof what, "read error: %s", strerror(errno));
    fclose(f);
    free(header);
    free(data);
    memset(out, 0, sizeof *out);
    set_err(err, errlen, "cannot read '%s': %s", path, what);
    return -1;
}

void npy_free(npy_array *array) {
    if (!array) return;
    free(array->data);
    memset(array, 0, sizeof *array);
}

double npy_get(const npy_array *a, size_t i) {
    switch (a->dtype) {
    case NPY_F32: return ((const float *)a->data)[i];
    case NPY_F64: return ((const double *)a->data)[i];
    case NPY_I32: return ((const int32_t *)a->data)[i];
    case NPY_I64: return (double)((const int64_t *)a->data)[i];
    case NPY_U8: return ((const uint8_t *)a->data)[i];
    }
    return 0;
}
