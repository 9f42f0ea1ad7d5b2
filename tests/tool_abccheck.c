/* Test helper for tests/test_convert.sh: an independent reader of .abc files (FORMAT.md).
 *   check FILE                          validates every header field, entry, alignment and range; "ok"
 *   info FILE                           one line per tensor: name dtype shape
 *   meta FILE KEY                       prints a metadata value (i64/f64 space-separated, string raw)
 *   vs-npy FILE TENSOR REF.npy RELTOL   max|a - ref| <= RELTOL * max|ref| (float32 .npy)
 *   vs-st FILE TENSOR ST_FILE ST_NAME   the tensor equals the safetensors one as its dtype allows:
 *                                       f32 exactly, f16/bf16 within half a unit in the last place
 *   vs-st-rows FILE TENSOR ST_FILE ST_NAME ROW0   the same against rows ROW0.. of a fused (2-D) safetensors
 *                                       tensor with as many columns (phi3_v's qkv_proj / gate_up_proj split)
 * Exit status 0 when the check holds, 1 when it does not, 2 on usage errors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model_convert/json.h"

typedef struct {
    unsigned char *b;
    size_t size;
} blob;

static blob load(const char *path) {
    blob r = { NULL, 0 };
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    r.b = malloc((size_t)n + 1);
    if (!r.b || fread(r.b, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    r.size = (size_t)n;
    return r;
}

static uint64_t u64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint32_t u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t pad8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

typedef struct { const char *name; uint32_t len, dtype, ndim; uint64_t shape[4], off, size; } dir_entry;
typedef struct { const char *key; uint32_t len, type; uint64_t count; const unsigned char *payload; } meta_entry;
typedef struct { blob f; meta_entry *meta; uint32_t n_meta; dir_entry *dir; uint32_t n_dir; } abc_file;

static int bad(const char *what) { fprintf(stderr, "check: %s\n", what); return 1; }

static int parse(abc_file *a, const char *path) {
    a->f = load(path);
    const unsigned char *b = a->f.b;
    uint64_t size = a->f.size;
    if (size < 64 || memcmp(b, "ABCMODEL", 8) != 0) return bad("magic");
    if (u32(b + 8) != 1 || u32(b + 12) != 64) return bad("version/header size");
    if (u64(b + 16) != size) return bad("file size field");
    uint64_t mo = u64(b + 24), ms = u64(b + 32), dof = u64(b + 40), ds = u64(b + 48);
    a->n_meta = u32(b + 56);
    a->n_dir = u32(b + 60);
    if (mo != 64 || mo % 8 || dof % 8 || mo + ms > dof || dof + ds > size) return bad("section offsets");
    a->meta = calloc(a->n_meta + 1, sizeof *a->meta);
    a->dir = calloc(a->n_dir + 1, sizeof *a->dir);
    uint64_t p = mo;
    for (uint32_t i = 0; i < a->n_meta; i++) {
        if (p + 16 > mo + ms) return bad("metadata entry past its section");
        meta_entry *m = &a->meta[i];
        m->len = u32(b + p);
        m->type = u32(b + p + 4);
        m->count = u64(b + p + 8);
        m->key = (const char *)b + p + 16;
        uint64_t psize = m->type == 3 ? m->count : m->count * 8;
        if (m->type < 1 || m->type > 3 || m->len == 0 || m->count > size) return bad("metadata entry type/count");
        uint64_t end = p + 16 + pad8(m->len) + pad8(psize);
        if (end > mo + ms) return bad("metadata entry past its section");
        for (uint64_t z = p + 16 + m->len; z < p + 16 + pad8(m->len); z++) if (b[z]) return bad("nonzero key padding");
        m->payload = b + p + 16 + pad8(m->len);
        for (uint32_t j = 0; j < i; j++)
            if (a->meta[j].len == m->len && memcmp(a->meta[j].key, m->key, m->len) == 0) return bad("duplicate metadata key");
        p = end;
    }
    if (p != mo + ms) return bad("metadata size field");
    p = dof;
    uint64_t prev_end = dof + ds;
    for (uint32_t i = 0; i < a->n_dir; i++) {
        if (p + 64 > dof + ds) return bad("directory entry past its section");
        dir_entry *d = &a->dir[i];
        d->len = u32(b + p);
        d->dtype = u32(b + p + 4);
        d->ndim = u32(b + p + 8);
        if (u32(b + p + 12) != 0) return bad("reserved field");
        uint64_t numel = 1;
        for (int k = 0; k < 4; k++) {
            d->shape[k] = u64(b + p + 16 + 8 * k);
            if ((uint32_t)k >= d->ndim && d->shape[k] != 1) return bad("unused dim not 1");
            numel *= d->shape[k];
        }
        d->off = u64(b + p + 48);
        d->size = u64(b + p + 56);
        d->name = (const char *)b + p + 64;
        if (d->ndim < 1 || d->ndim > 4 || d->dtype > 7 || d->dtype == 5) return bad("ndim/dtype");
        static const uint64_t esize[] = { 4, 2, 2, 4, 1 };
        if (d->dtype == 6) { /* q8: strips of 16 rows × blocks of 32, 16·32 int8 + 16 f32 scales each (FORMAT.md) */
            if (d->ndim != 2 || d->shape[1] % 32 || d->size != (d->shape[0] + 15) / 16 * (d->shape[1] / 32) * 576)
                return bad("q8 tensor shape or size");
        } else if (d->dtype == 7) { /* q4: the same strips, 16·32 nibbles + 16 float16 scales each (FORMAT.md) */
            if (d->ndim != 2 || d->shape[1] % 32 || d->size != (d->shape[0] + 15) / 16 * (d->shape[1] / 32) * 288)
                return bad("q4 tensor shape or size");
        } else if (d->size != numel * esize[d->dtype]) return bad("tensor size != shape x element size");
        if (d->off % 64 || d->off < prev_end || d->off + d->size > size) return bad("tensor data offset (alignment, order, range)");
        prev_end = d->off + d->size;
        for (uint32_t j = 0; j < i; j++)
            if (a->dir[j].len == d->len && memcmp(a->dir[j].name, d->name, d->len) == 0) return bad("duplicate tensor name");
        p += 64 + pad8(d->len);
        if (p > dof + ds) return bad("directory entry past its section");
    }
    if (p != dof + ds) return bad("directory size field");
    if (a->n_dir && prev_end != size) return bad("bytes after the last tensor");
    return 0;
}

static const dir_entry *find_tensor(const abc_file *a, const char *name) {
    for (uint32_t i = 0; i < a->n_dir; i++)
        if (a->dir[i].len == strlen(name) && memcmp(a->dir[i].name, name, a->dir[i].len) == 0) return &a->dir[i];
    return NULL;
}

static const meta_entry *find_meta(const abc_file *a, const char *key) {
    for (uint32_t i = 0; i < a->n_meta; i++)
        if (a->meta[i].len == strlen(key) && memcmp(a->meta[i].key, key, a->meta[i].len) == 0) return &a->meta[i];
    return NULL;
}

/* decoding by arithmetic (not bit tricks) to stay independent of the converter */
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}
static double bf16_value(uint16_t h) {
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static double element(const unsigned char *base, uint32_t dtype, uint64_t i) {
    const unsigned char *p = base + i * (dtype == 1 || dtype == 2 ? 2 : 4);
    if (dtype == 1) return half_value((uint16_t)(p[0] | p[1] << 8));
    if (dtype == 2) return bf16_value((uint16_t)(p[0] | p[1] << 8));
    float f;
    uint32_t bits = u32(p);
    memcpy(&f, &bits, 4);
    return f;
}

static uint64_t numel(const dir_entry *d) { return d->shape[0] * d->shape[1] * d->shape[2] * d->shape[3]; }

static int vs_npy(const abc_file *a, const char *name, const char *npy, double tol) {
    const dir_entry *d = find_tensor(a, name);
    if (!d) { fprintf(stderr, "no tensor %s\n", name); return 1; }
    blob r = load(npy);
    if (r.size < 10 || memcmp(r.b, "\x93NUMPY", 6) != 0) { fprintf(stderr, "%s: not .npy\n", npy); return 2; }
    size_t hl = r.b[8] | r.b[9] << 8;
    char *hdr = strndup((const char *)r.b + 10, hl);
    if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False")) { fprintf(stderr, "%s: need little-endian float32, C order\n", npy); return 2; }
    uint64_t n = (r.size - 10 - hl) / 4;
    /* shape: compare the product and the dims listed in the header */
    char *sh = strstr(hdr, "'shape': (");
    uint64_t prod = 1;
    int k = 0, dims_ok = 1;
    for (char *q = sh ? sh + 10 : NULL; q && *q && *q != ')'; k++) {
        long long v = strtoll(q, &q, 10);
        prod *= (uint64_t)v;
        if ((uint32_t)k >= d->ndim || (uint64_t)v != d->shape[k]) dims_ok = 0;
        while (*q == ',' || *q == ' ') q++;
    }
    free(hdr);
    if (!dims_ok || (uint32_t)k != d->ndim || prod != numel(d) || n != numel(d)) { fprintf(stderr, "%s: shape differs from %s\n", npy, name); free(r.b); return 1; }
    double maxref = 0, maxdiff = 0;
    for (uint64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, r.b + 10 + hl + 4 * i, 4);
        double got = element(a->f.b + d->off, d->dtype, i);
        if (fabs(f) > maxref) maxref = fabs(f);
        double diff = fabs(got - f);
        if (!(diff <= maxdiff)) maxdiff = diff; /* NaN propagates */
    }
    free(r.b);
    int ok = maxdiff <= tol * maxref;
    printf("%s: max|diff| %.3g, max|ref| %.3g, relative %.3g (tolerance %.3g) %s\n", name, maxdiff, maxref, maxdiff / maxref, tol, ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

static int vs_st(const abc_file *a, const char *name, const char *st_path, const char *st_name, long long row0) {
    const dir_entry *d = find_tensor(a, name);
    if (!d) { fprintf(stderr, "no tensor %s\n", name); return 1; }
    if (d->dtype >= 6) { fprintf(stderr, "%s is q8 or q4: not comparable element by element\n", name); return 1; }
    blob s = load(st_path);
    uint64_t hl = u64(s.b);
    char err[200];
    json_value *h = json_parse((const char *)s.b + 8, (size_t)hl, err, sizeof err);
    const json_value *e = h ? json_get(h, st_name) : NULL;
    if (!e) { fprintf(stderr, "%s: no tensor %s\n", st_path, st_name); return 2; }
    const char *dt = json_get(e, "dtype")->string;
    const json_value *o = json_get(e, "data_offsets");
    const unsigned char *src = s.b + 8 + hl + (uint64_t)o->items[0].number;
    uint64_t n = ((uint64_t)o->items[1].number - (uint64_t)o->items[0].number) / (strcmp(dt, "F32") == 0 ? 4 : 2);
    uint32_t sdt = strcmp(dt, "F32") == 0 ? 0 : strcmp(dt, "F16") == 0 ? 1 : 2;
    int ok = n == numel(d);
    if (row0 >= 0) {
        /* rows row0 .. row0 + d->shape[0] of a [rows, d->shape[1]] source */
        const json_value *sh = json_get(e, "shape");
        ok = d->ndim == 2 && sh && sh->n_items == 2 && (uint64_t)sh->items[1].number == d->shape[1] &&
             (uint64_t)row0 + d->shape[0] <= (uint64_t)sh->items[0].number;
        src += (uint64_t)row0 * d->shape[1] * (sdt == 0 ? 4 : 2);
        n = numel(d);
    }
    uint64_t bad_at = 0;
    for (uint64_t i = 0; ok && i < n; i++) {
        double want = element(src, sdt, i), got = element(a->f.b + d->off, d->dtype, i);
        if (d->dtype == 0 || (d->dtype == sdt)) ok = got == want;
        else {
            /* half a unit in the last place of the narrower format (10 or 7 mantissa bits) */
            int mant = d->dtype == 1 ? 10 : 7, e2;
            frexp(want, &e2);
            if (d->dtype == 1 && e2 < -13) e2 = -13;
            ok = fabs(got - want) <= ldexp(1.0, e2 - 1 - mant - 1);
        }
        if (!ok) bad_at = i;
    }
    json_free(h);
    free(s.b);
    if (!ok) fprintf(stderr, "%s differs from %s:%s (element %llu or count)\n", name, st_path, st_name, (unsigned long long)bad_at);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: see the comment at the top of tests/tool_abccheck.c\n"); return 2; }
    abc_file a;
    memset(&a, 0, sizeof a);
    int rc = parse(&a, argv[2]);
    if (rc) return 1;
    const char *cmd = argv[1];
    if (strcmp(cmd, "check") == 0) printf("ok %u metadata, %u tensors\n", a.n_meta, a.n_dir);
    else if (strcmp(cmd, "info") == 0) {
        static const char *names[] = { "f32", "f16", "bf16", "i32", "u8", "q8-rows", "q8", "q4" };
        for (uint32_t i = 0; i < a.n_dir; i++) {
            printf("%.*s %s [", (int)a.dir[i].len, a.dir[i].name, names[a.dir[i].dtype]);
            for (uint32_t k = 0; k < a.dir[i].ndim; k++) printf(k ? ",%llu" : "%llu", (unsigned long long)a.dir[i].shape[k]);
            printf("]\n");
        }
    } else if (strcmp(cmd, "meta") == 0 && argc == 4) {
        const meta_entry *m = find_meta(&a, argv[3]);
        if (!m) { fprintf(stderr, "no metadata %s\n", argv[3]); rc = 1; }
        else if (m->type == 3) printf("%.*s\n", (int)m->count, (const char *)m->payload);
        else {
            for (uint64_t i = 0; i < m->count; i++) {
                uint64_t v = u64(m->payload + 8 * i);
                if (m->type == 1) printf(i ? " %lld" : "%lld", (long long)v);
                else { double x; memcpy(&x, &v, 8); printf(i ? " %.17g" : "%.17g", x); }
            }
            printf("\n");
        }
    } else if (strcmp(cmd, "vs-npy") == 0 && argc == 6) rc = vs_npy(&a, argv[3], argv[4], atof(argv[5]));
    else if (strcmp(cmd, "vs-st") == 0 && argc == 6) rc = vs_st(&a, argv[3], argv[4], argv[5], -1);
    else if (strcmp(cmd, "vs-st-rows") == 0 && argc == 7) rc = vs_st(&a, argv[3], argv[4], argv[5], atoll(argv[6]));
    else { fprintf(stderr, "bad command\n"); rc = 2; }
    free(a.meta);
    free(a.dir);
    free(a.f.b);
    return rc;
}
