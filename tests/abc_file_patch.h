/* Helpers for tests that corrupt a .abc file on purpose (model_convert/FORMAT.md): read it into memory,
 * find a metadata payload or a tensor directory entry, write the patched bytes back and expect
 * abc_model_load to fail with a given status and message. Include after test.h and abc.c. */
#ifndef ABC_FILE_PATCH_H
#define ABC_FILE_PATCH_H

typedef struct {
    uint8_t *data;
    size_t size; /* 0 when the file could not be read */
} file_bytes;

static file_bytes file_bytes_read(const char *path) {
    size_t len = 0;
    file_bytes fb = {(uint8_t *)test_read_file(path, &len), 0};
    fb.size = fb.data ? len : 0;
    return fb;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Offset of a metadata entry's payload, or 0. */
static size_t find_meta(const file_bytes *fb, const char *key) {
    size_t off = rd64(fb->data + 24);
    uint32_t n = rd32(fb->data + 56);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t klen = rd32(fb->data + off), type = rd32(fb->data + off + 4);
        uint64_t count = rd64(fb->data + off + 8);
        size_t payload = off + 16 + ((klen + 7) & ~7u);
        if (klen == strlen(key) && !memcmp(fb->data + off + 16, key, klen)) return payload;
        size_t plen = type == 3 ? count : count * 8;
        off = payload + ((plen + 7) & ~(size_t)7);
    }
    return 0;
}

/* Offset of a tensor directory entry, or 0. */
static size_t find_tensor(const file_bytes *fb, const char *name) {
    size_t off = rd64(fb->data + 40);
    uint32_t n = rd32(fb->data + 60);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nlen = rd32(fb->data + off);
        if (nlen == strlen(name) && !memcmp(fb->data + off + 64, name, nlen)) return off;
        off += 64 + ((nlen + 7) & ~7u);
    }
    return 0;
}

/* Swaps the first two dimensions of the tensor directory entry at e (a matrix shape transposed; a second
 * call restores it), and whether they are equal. */
static void swap_matrix_dims(file_bytes *fb, size_t e) {
    uint8_t d0[8];
    memcpy(d0, fb->data + e + 16, 8);
    memmove(fb->data + e + 16, fb->data + e + 24, 8);
    memcpy(fb->data + e + 24, d0, 8);
}

static bool matrix_is_square(const file_bytes *fb, size_t e) {
    return memcmp(fb->data + e + 16, fb->data + e + 24, 8) == 0;
}

/* Writes the patched bytes to `path`, loads them and expects `status` with `needle` in the message
 * (ABC_OK: the load succeeds). */
static void expect_load_status(const file_bytes *fb, const char *path, const char *what, abc_status status,
                               const char *needle) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(fb->data, 1, fb->size, f) == fb->size, "write %s", path);
    if (f) fclose(f);
    abc_model *m = (abc_model *)1;
    abc_error err = {0};
    abc_status st = abc_model_load(path, NULL, &m, &err);
    CHECK(st == status && (m == NULL) == (status != ABC_OK), "%s: got %s (%s)", what, abc_status_string(st),
          err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.message, needle);
    if (st == ABC_OK) abc_model_free(m);
    remove(path);
}

#endif
