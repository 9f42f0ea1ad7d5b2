/* Weight-file loader: a real converted file loads; every kind of corruption gives a specific error. */
#include "../abc.c"
#include "test.h"

#define MODEL_PATH "build/tiny-abc.abc"

static uint8_t *original;
static size_t original_size;

static bool load_original(void) {
    original = (uint8_t *)test_read_file(MODEL_PATH, &original_size);
    return original != NULL;
}

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Parses a (possibly mutated) copy of the first `size` bytes of the original file. */
static abc_status parse_copy(const uint8_t *bytes, size_t size, abc_error *err) {
    weight_file wf;
    memset(&wf, 0, sizeof wf);
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, bytes, size);
    wf.base = copy;
    wf.size = size;
    wf.mapped = false;
    abc_status st = weight_file_parse(&wf, err);
    weight_file_close(&wf); /* frees copy too */
    return st;
}

/* As parse_copy, parsing `bytes` where they are (the caller keeps them): the fuzz loop's 3000 parses
 * of a 24 MB file would otherwise spend minutes in fresh allocations under ASan. */
static abc_status parse_in_place(uint8_t *bytes, size_t size, abc_error *err) {
    weight_file wf;
    memset(&wf, 0, sizeof wf);
    wf.base = bytes;
    wf.size = size;
    wf.mapped = false;
    abc_status st = weight_file_parse(&wf, err);
    wf.base = NULL; /* not ours to free */
    weight_file_close(&wf);
    return st;
}

static uint8_t *mutable_copy(void) {
    uint8_t *c = malloc(original_size);
    memcpy(c, original, original_size);
    return c;
}

static void test_real_file_loads(void) {
    weight_file wf;
    abc_error err = {0};
    abc_status st = weight_file_open(MODEL_PATH, &wf, &err);
    CHECK(st == ABC_OK, "open failed: %s", err.message);
    if (st != ABC_OK) return;
    CHECK(wf.n_tensors > 50, "only %u tensors", wf.n_tensors);
    const tensor *t = wf_tensor(&wf, "model.embed_tokens.weight");
    CHECK(t && t->ndim == 2 && t->shape[1] == 32, "embed_tokens missing or misshaped");
    int64_t hidden = 0;
    CHECK(wf_int(&wf, "text.hidden_size", &hidden, &err) && hidden == 32, "hidden_size %lld", (long long)hidden);
    const char *s;
    size_t len;
    CHECK(wf_str(&wf, "general.preset", &s, &len, &err) && len == 3 && !memcmp(s, "abc", 3), "preset");
    CHECK(!wf_int(&wf, "no.such.key", &hidden, &err) && err.code == ABC_ERR_FORMAT, "missing key accepted");
    CHECK(!wf_str(&wf, "text.hidden_size", &s, &len, &err), "int read as string");
    CHECK(((uintptr_t)t->data % 64) == 0, "tensor data not 64-byte aligned");
    weight_file_close(&wf);
}

static void test_missing_and_bad_path(void) {
    weight_file wf;
    abc_error err = {0};
    CHECK(weight_file_open("build/does-not-exist.abc", &wf, &err) == ABC_ERR_IO, "missing file: %s", err.message);
    CHECK(weight_file_open(NULL, &wf, &err) == ABC_ERR_INVALID_ARG, "NULL path");
    CHECK(weight_file_open("build", &wf, &err) == ABC_ERR_IO, "directory accepted");
}

static void test_truncations(void) {
    abc_error err = {0};
    /* Every truncation point in the header and directories, and some in the data, must be refused. */
    size_t cuts[] = {0, 1, 7, 8, 63, 64, 100, 1000, 4096, original_size / 2, original_size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] >= original_size) continue;
        abc_status st = parse_copy(original, cuts[i], &err);
        CHECK(st == ABC_ERR_FORMAT, "truncated at %zu: status %d (%s)", cuts[i], st, err.message);
    }
}

static void test_header_fields(void) {
    abc_error err = {0};
    uint8_t *c = mutable_copy();
    c[0] = 'X';
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "magic"), "bad magic: %s", err.message);
    memcpy(c, original, 64);
    put_u32(c + 8, 99);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_VERSION, "bad version: %s", err.message);
    memcpy(c, original, 64);
    put_u64(c + 24, original_size + 8);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "metadata"), "meta offset past end: %s", err.message);
    /* a metadata section starting inside the 64-byte header (offset 8 is 8-aligned and inside the file) */
    memcpy(c, original, 64);
    put_u64(c + 24, 8);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "metadata section [8,"),
          "meta offset in the header: %s", err.message);
    memcpy(c, original, 64);
    put_u64(c + 48, UINT64_MAX - 10);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT, "huge directory size: %s", err.message);
    memcpy(c, original, 64);
    put_u32(c + 60, 0xFFFFFFFFu);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT, "huge tensor count: %s", err.message);
    memcpy(c, original, 64);
    put_u32(c + 56, 0xFFFFFFFFu);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT, "huge metadata count: %s", err.message);
    free(c);
}

static void test_tensor_entries(void) {
    abc_error err = {0};
    uint64_t dir = read_u64le(original + 40);
    uint8_t *c = mutable_copy();
    /* data offset past the end */
    put_u64(c + dir + 48, (original_size + 64) & ~(uint64_t)63);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "outside"), "offset past end: %s", err.message);
    memcpy(c, original, original_size);
    put_u64(c + dir + 48, read_u64le(original + dir + 48) + 4);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "aligned"), "misaligned: %s", err.message);
    memcpy(c, original, original_size);
    put_u64(c + dir + 16, read_u64le(original + dir + 16) + 1); /* shape no longer matches byte size */
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "do not match"), "shape/bytes: %s", err.message);
    memcpy(c, original, original_size);
    put_u32(c + dir + 4, 77);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "dtype"), "dtype: %s", err.message);
    memcpy(c, original, original_size);
    put_u32(c + dir + 8, 9);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "rank"), "rank: %s", err.message);
    /* two entries with the same name: layer 1's up_proj renamed to layer 0's (same length) */
    {
        static const char first[] = "model.layers.0.mlp.up_proj.weight", second[] = "model.layers.1.mlp.up_proj.weight";
        uint64_t pos = dir, at_first = 0, at_second = 0;
        for (uint32_t i = 0; i < read_u32le(original + 60); i++) {
            uint32_t nl = read_u32le(original + pos);
            if (nl == sizeof first - 1 && !memcmp(original + pos + 64, first, nl)) at_first = pos;
            if (nl == sizeof second - 1 && !memcmp(original + pos + 64, second, nl)) at_second = pos;
            pos += 64 + ((nl + 7) & ~(uint64_t)7);
        }
        CHECK(at_first && at_second, "up_proj entries not found");
        if (at_first && at_second) {
            memcpy(c, original, original_size);
            memcpy(c + at_second + 64, first, sizeof first - 1);
            CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "appears twice"),
                  "duplicate tensor name: %s", err.message);
        }
    }
    memcpy(c, original, original_size);
    put_u32(c + dir, 0xFFFFFF);
    CHECK(parse_copy(c, original_size, &err) == ABC_ERR_FORMAT && strstr(err.message, "name"), "name length: %s", err.message);
    free(c);
}

/* Tensor data pointing before the data section: into the header (offset 0), the metadata or the tensor
 * directory (issue #26, R2). Each of these ranges lies inside the file, so only a check against the data
 * section refuses them. The smallest tensor is used so that its bytes fit in each region. */
static void test_tensor_data_outside_data_section(void) {
    abc_error err = {0};
    uint64_t meta_off = read_u64le(original + 24), meta_size = read_u64le(original + 32);
    uint64_t dir = read_u64le(original + 40), dir_size = read_u64le(original + 48);
    uint32_t n = read_u32le(original + 60);
    uint64_t pos = dir, best = 0, best_bytes = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t nbytes = read_u64le(original + pos + 56);
        if (nbytes < best_bytes) best_bytes = nbytes, best = pos;
        pos += 64 + ((read_u32le(original + pos) + 7) & ~(uint64_t)7);
    }
    CHECK(best_bytes <= 256, "smallest tensor has %llu bytes", (unsigned long long)best_bytes);
    const struct { const char *what; uint64_t off, region_end; } cases[] = {
        {"header", 0, ABC_FILE_HEADER_SIZE},
        {"metadata", (meta_off + 63) & ~(uint64_t)63, meta_off + meta_size},
        {"directory", (dir + 63) & ~(uint64_t)63, dir + dir_size},
    };
    uint8_t *c = mutable_copy();
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        CHECK(cases[k].off < cases[k].region_end, "%s: no aligned offset inside it", cases[k].what);
        memcpy(c, original, original_size);
        put_u64(c + best + 48, cases[k].off);
        abc_status st = parse_copy(c, original_size, &err);
        CHECK(st == ABC_ERR_FORMAT && strstr(err.message, "outside the file's data section"), "data in the %s: status %d (%s)",
              cases[k].what, (int)st, err.message);
    }
    /* the unmodified entry still loads (the check is not simply refusing everything) */
    memcpy(c, original, original_size);
    CHECK(parse_copy(c, original_size, &err) == ABC_OK, "original: %s", err.message);
    free(c);
}

/* Random byte flips anywhere in the header and directories: never a crash (ASan), always a status. */
static void test_mutation_fuzz(void) {
    uint64_t dir_end = read_u64le(original + 40) + read_u64le(original + 48);
    uint8_t *c = mutable_copy();
    uint64_t state = 12345;
    int refused = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(c, original, dir_end);
        for (int k = 0; k < 3; k++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            c[(state >> 33) % dir_end] ^= (uint8_t)(1u << ((state >> 20) & 7));
        }
        abc_error err = {0};
        abc_status st = parse_in_place(c, original_size, &err);
        if (st != ABC_OK) {
            refused++;
            CHECK(err.message[0] != 0, "error without message (status %d)", st);
        }
    }
    CHECK(refused > 100, "only %d of 3000 mutations refused", refused);
    free(c);
}

/* ---- q8 tensors (FORMAT.md): a one-tensor file built here ---- */

/* A file holding one tensor "w" of the given dtype, rank, shape and declared byte size; the data
 * section holds `data_bytes` bytes (a copy of `data` when given, else zeros). Caller frees. */
static uint8_t *one_tensor_file(uint32_t dtype, uint32_t ndim, const uint64_t shape[4], uint64_t nbytes,
                                const void *data, size_t data_bytes, size_t *size) {
    const uint64_t dir_off = 64, dir_size = 64 + 8, data_off = 192;
    *size = (size_t)data_off + data_bytes;
    uint8_t *f = calloc(1, *size);
    memcpy(f, "ABCMODEL", 8);
    put_u32(f + 8, 1);
    put_u32(f + 12, 64);
    put_u64(f + 16, *size);
    put_u64(f + 24, 64); /* empty metadata */
    put_u64(f + 32, 0);
    put_u64(f + 40, dir_off);
    put_u64(f + 48, dir_size);
    put_u32(f + 56, 0);
    put_u32(f + 60, 1);
    uint8_t *e = f + dir_off;
    put_u32(e, 1);
    put_u32(e + 4, dtype);
    put_u32(e + 8, ndim);
    for (int d = 0; d < 4; d++) put_u64(e + 16 + 8 * d, shape[d]);
    put_u64(e + 48, data_off);
    put_u64(e + 56, nbytes);
    e[64] = 'w';
    if (data) memcpy(f + data_off, data, data_bytes);
    return f;
}

static abc_status parse_one_tensor(uint32_t dtype, uint32_t ndim, uint64_t d0, uint64_t d1, uint64_t d2, uint64_t nbytes,
                                   abc_error *err) {
    const uint64_t shape[4] = {d0, d1, d2, 1};
    size_t size;
    size_t data_bytes = nbytes < (1u << 20) ? (size_t)nbytes : 64;
    uint8_t *f = one_tensor_file(dtype, ndim, shape, nbytes, NULL, data_bytes, &size);
    abc_status st = parse_copy(f, size, err);
    free(f);
    return st;
}

static void test_q8_tensors(void) {
    abc_error err = {0};
    /* [3, 64] (FORMAT.md): one strip of 16 rows (13 of them padding) × 2 blocks of quads and 16 scales */
    enum { OUT = 3, IN = 64, BLOCK_BYTES = 16 * 32 + 16 * 4, BYTES = 2 * BLOCK_BYTES };
    uint8_t data[BYTES];
    memset(data, 0, sizeof data);
    for (int j = 0; j < OUT; j++)
        for (int k = 0; k < IN; k++) {
            uint8_t *block = data + (k / 32) * BLOCK_BYTES;
            block[(k % 32 / 4) * 64 + j * 4 + k % 4] = (uint8_t)(int8_t)((j * IN + k) % 255 - 127);
            float s = 0.5f * (float)(j * 2 + k / 32 + 1);
            memcpy(block + 16 * 32 + j * 4, &s, 4);
        }
    const uint64_t shape[4] = {OUT, IN, 1, 1};
    size_t size;
    uint8_t *f = one_tensor_file(DT_Q8, 2, shape, BYTES, data, BYTES, &size);
    weight_file wf;
    memset(&wf, 0, sizeof wf);
    wf.base = f;
    wf.size = size;
    abc_status st = weight_file_parse(&wf, &err);
    CHECK(st == ABC_OK, "valid q8 tensor refused: %s", err.message);
    if (st == ABC_OK) {
        const tensor *t = wf_tensor(&wf, "w");
        float row[IN];
        tensor_row_f32(t, 2, row);
        for (int k = 0; k < IN; k++) {
            float want = (float)((2 * IN + k) % 255 - 127) * (0.5f * (float)(2 * 2 + k / 32 + 1));
            CHECK(row[k] == want, "row 2 [%d] = %g, want %g", k, row[k], want);
        }
    }
    weight_file_close(&wf); /* frees f */

    /* sizes off by one either way, a byte size counting the scales as f32 elements */
    CHECK(parse_one_tensor(DT_Q8, 2, OUT, IN, 1, BYTES - 1, &err) == ABC_ERR_FORMAT && strstr(err.message, "q8"),
          "short q8: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, OUT, IN, 1, BYTES + 1, &err) == ABC_ERR_FORMAT && strstr(err.message, "q8"),
          "long q8: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, OUT, IN, 1, 2 * 16 * 32, &err) == ABC_ERR_FORMAT, "q8 without scales: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, OUT, IN, 1, OUT * IN + OUT * 2 * 4, &err) == ABC_ERR_FORMAT, "q8 in rows, no strips: %s",
          err.message);
    /* rows that are not whole blocks, other ranks */
    CHECK(parse_one_tensor(DT_Q8, 2, 3, 48, 1, 3 * 48 + 3 * 2 * 4, &err) == ABC_ERR_FORMAT && strstr(err.message, "multiple of 32"),
          "48 columns: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, 3, 1, 1, 3 + 4, &err) == ABC_ERR_FORMAT, "1 column: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 1, 64, 1, 1, 64 + 8, &err) == ABC_ERR_FORMAT && strstr(err.message, "2 dimensions"),
          "1-D q8: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 3, 2, 3, 64, 2 * 3 * 64 + 2 * 3 * 2 * 4, &err) == ABC_ERR_FORMAT && strstr(err.message, "2 dimensions"),
          "3-D q8: %s", err.message);
    /* huge shapes whose byte count would overflow or cannot be in the file */
    CHECK(parse_one_tensor(DT_Q8, 2, 1ull << 58, 32, 1, 36, &err) == ABC_ERR_FORMAT, "2^58 rows: %s", err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, 1ull << 58, 32, 1, 36ull << 58, &err) == ABC_ERR_FORMAT, "2^58 rows, exact size: %s",
          err.message);
    CHECK(parse_one_tensor(DT_Q8, 2, 3, 1ull << 62, 1, 3, &err) == ABC_ERR_FORMAT, "2^62 columns: %s", err.message);
    /* the retired row layout (dtype 5) is refused by name; the code one past q8 is unknown */
    CHECK(parse_one_tensor(DT_Q8_ROWS_RETIRED, 2, OUT, IN, 1, OUT * IN + OUT * 2 * 4, &err) == ABC_ERR_FORMAT &&
              strstr(err.message, "convert the checkpoint again"),
          "dtype 5: %s", err.message);
}

/* q4 (FORMAT.md): [3, 64] is one strip × 2 blocks of 256 nibble bytes and 16 float16 scales. */
static void test_q4_tensors(void) {
    abc_error err = {0};
    enum { OUT = 3, IN = 64, BLOCK_BYTES = 16 * 32 / 2 + 16 * 2, BYTES = 2 * BLOCK_BYTES };
    uint8_t data[BYTES];
    memset(data, 0, sizeof data);
    for (int j = 0; j < OUT; j++)
        for (int k = 0; k < IN; k++) {
            uint8_t *block = data + (k / 32) * BLOCK_BYTES;
            const int q = (j * IN + k) % 16 - 8, kk = k % 32;
            block[(kk / 8) * 64 + j * 4 + kk % 4] |= (uint8_t)((q + 8) << (kk % 8 < 4 ? 0 : 4));
            uint16_t h = (uint16_t)(0x3800 + 0x400 * (j * 2 + k / 32)); /* 0.5, 1, 2, ... */
            if (j == 1) h |= 0x8000;                                    /* negative scales too */
            memcpy(block + 256 + j * 2, &h, 2);
        }
    const uint64_t shape[4] = {OUT, IN, 1, 1};
    size_t size;
    uint8_t *f = one_tensor_file(DT_Q4, 2, shape, BYTES, data, BYTES, &size);
    weight_file wf;
    memset(&wf, 0, sizeof wf);
    wf.base = f;
    wf.size = size;
    abc_status st = weight_file_parse(&wf, &err);
    CHECK(st == ABC_OK, "valid q4 tensor refused: %s", err.message);
    if (st == ABC_OK) {
        const tensor *t = wf_tensor(&wf, "w");
        for (int j = 0; j < OUT; j++) {
            float row[IN];
            tensor_row_f32(t, j, row);
            for (int k = 0; k < IN; k++) {
                float want = (float)((j * IN + k) % 16 - 8) * ldexpf(j == 1 ? -0.5f : 0.5f, j * 2 + k / 32);
                CHECK(row[k] == want, "row %d [%d] = %g, want %g", j, k, row[k], want);
            }
        }
    }
    weight_file_close(&wf); /* frees f */
    /* sizes off by one, q8's size for the shape, float32 scales, rows that are not whole blocks, other ranks */
    CHECK(parse_one_tensor(DT_Q4, 2, OUT, IN, 1, BYTES - 1, &err) == ABC_ERR_FORMAT && strstr(err.message, "q4"),
          "short q4: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, OUT, IN, 1, BYTES + 1, &err) == ABC_ERR_FORMAT && strstr(err.message, "q4"),
          "long q4: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, OUT, IN, 1, 2 * (16 * 32 + 16 * 4), &err) == ABC_ERR_FORMAT && strstr(err.message, "q4"),
          "q4 with q8's size: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, OUT, IN, 1, 2 * (16 * 16 + 16 * 4), &err) == ABC_ERR_FORMAT, "q4 with f32 scales: %s",
          err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, 3, 48, 1, 3 * 24 + 3 * 2 * 2, &err) == ABC_ERR_FORMAT && strstr(err.message, "multiple of 32"),
          "48 columns: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 1, 64, 1, 1, 32 + 4, &err) == ABC_ERR_FORMAT && strstr(err.message, "2 dimensions"),
          "1-D q4: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, 1ull << 59, 32, 1, 288ull << 55, &err) == ABC_ERR_FORMAT, "2^59 rows: %s", err.message);
    CHECK(parse_one_tensor(DT_Q4, 2, 3, 1ull << 62, 1, 3, &err) == ABC_ERR_FORMAT, "2^62 columns: %s", err.message);
    /* the dtype code one past the last is unknown */
    CHECK(parse_one_tensor(DT_Q4 + 1, 2, OUT, IN, 1, BYTES, &err) == ABC_ERR_FORMAT && strstr(err.message, "unknown dtype"),
          "dtype 8: %s", err.message);
}

static void test_allocation_failures(void) {
    /* Each allocation in the loader failing in turn gives ABC_ERR_NOMEM, never a crash or leak. */
    for (long n = 0; n < 4; n++) {
        weight_file wf;
        abc_error err = {0};
        atomic_store(&abc_test_fail_after, n);
        abc_status st = weight_file_open(MODEL_PATH, &wf, &err);
        atomic_store(&abc_test_fail_after, -1);
        if (st == ABC_OK) weight_file_close(&wf);
        else CHECK(st == ABC_ERR_NOMEM, "allocation %ld failing gave %d: %s", n, st, err.message);
    }
}

int main(void) {
    if (!load_original()) {
        printf("cannot read %s (run make test)\n", MODEL_PATH);
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN_TEST(test_real_file_loads);
    RUN_TEST(test_missing_and_bad_path);
    RUN_TEST(test_truncations);
    RUN_TEST(test_header_fields);
    RUN_TEST(test_tensor_entries);
    RUN_TEST(test_tensor_data_outside_data_section);
    RUN_TEST(test_mutation_fuzz);
    RUN_TEST(test_allocation_failures);
    RUN_TEST(test_q8_tensors);
    RUN_TEST(test_q4_tensors);
    free(original);
    return test_summary();
}
