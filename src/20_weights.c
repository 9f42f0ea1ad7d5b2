
/* ================================================================================================
 * 3. Weight file: mapping and validating a .abc file (model_convert/FORMAT.md)
 * ================================================================================================ */

#define ABC_FILE_MAGIC "ABCMODEL"
#define ABC_FILE_VERSION 1u
#define ABC_HEADER_SIZE 64u
#define ABC_TENSOR_ALIGN 64u
#define ABC_MAX_NAME 1024u

static uint32_t read_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t read_u64le(const uint8_t *p) {
    return (uint64_t)read_u32le(p) | (uint64_t)read_u32le(p + 4) << 32;
}
static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t dtype_size(uint32_t dtype) {
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_F16: case DT_BF16: return 2;
    case DT_U8: return 1;
    default: return 0; /* block formats (q8) have no per-element size */
    }
}

/* DT_Q8 (FORMAT.md): a 2-D [out][in] tensor with `in` a multiple of Q8_BLOCK; element (j, k) is
 * q[j][k] · scale[j][k / Q8_BLOCK]. Stored in strips of Q8_STRIP rows (the last padded with zero rows),
 * each strip block by block: int8 [Q8_BLOCK/4][Q8_STRIP][4] (row j's k..k+3 side by side), then f32
 * scales [Q8_STRIP]. The kernels read it in place (section 7). */
#define Q8_BLOCK 32
#define Q8_STRIP 16
#define Q8_STRIP_BLOCK_BYTES ((size_t)Q8_STRIP * (Q8_BLOCK + 4)) /* quads, scales */

/* Column j's bytes in the strip block at b (j < 16) or b_hi (j ≥ 16): its quads at [k/4 · Q8_STRIP · 4
 * + k % 4], its scale at [Q8_STRIP · Q8_BLOCK]. */
static const uint8_t *q8_strip_column(const uint8_t *b, const uint8_t *b_hi, int j) {
    return j < Q8_STRIP ? b + (size_t)j * 4 : b_hi + (size_t)(j - Q8_STRIP) * 4;
}

/* Element k of a column (as q8_strip_column gives it): (float)q · its block's scale. */
static float q8_strip_weight_value(const uint8_t *column, int k) {
    float scale;
    memcpy(&scale, column + Q8_STRIP * Q8_BLOCK, sizeof scale);
    return (float)(int8_t)column[(size_t)(k / 4) * Q8_STRIP * 4 + k % 4] * scale;
}

/* Bytes of a q8 [out][in] tensor; false when `in` is not a multiple of Q8_BLOCK or the size overflows. */
static bool q8_nbytes(uint64_t out, uint64_t in, uint64_t *nbytes) {
    if (in % Q8_BLOCK != 0 || out == 0 || in == 0) return false;
    uint64_t strips = out / Q8_STRIP + (out % Q8_STRIP != 0);
    uint64_t per_strip = in / Q8_BLOCK * (Q8_STRIP * (Q8_BLOCK + 4)); /* in ≤ INT64_MAX: no overflow */
    if (per_strip > UINT64_MAX / strips) return false;
    *nbytes = per_strip * strips;
    return true;
}

static const char *dtype_name(uint32_t dtype) {
    static const char *names[] = {"f32", "f16", "bf16", "i32", "u8", "q8-rows", "q8"};
    return dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown";
}

/* Bytes [off, off+len) lie inside a section [sec_off, sec_off+sec_len)? (overflow-safe) */
static bool range_inside(uint64_t off, uint64_t len, uint64_t sec_off, uint64_t sec_len) {
    return off >= sec_off && len <= sec_len && off - sec_off <= sec_len - len;
}

/* Parses the metadata section [off, off+size) into wf->meta. */
static abc_status parse_metadata(weight_file *wf, uint64_t off, uint64_t size, uint32_t count,
                                 abc_error *err) {
    if (count > size / 16) return fail(err, ABC_ERR_FORMAT, "metadata: %u entries cannot fit in %llu bytes", count, (unsigned long long)size);
    wf->meta = xcalloc(count, sizeof *wf->meta);
    if (!wf->meta) return fail(err, ABC_ERR_NOMEM, "out of memory reading metadata");
    uint64_t pos = off, end = off + size;
    for (uint32_t i = 0; i < count; i++) {
        if (end - pos < 16) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: truncated", i);
        const uint8_t *p = wf->base + pos;
        uint32_t key_len = read_u32le(p), type = read_u32le(p + 4);
        uint64_t n = read_u64le(p + 8);
        if (key_len == 0 || key_len > ABC_MAX_NAME) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: bad key length %u", i, key_len);
        if (type < 1 || type > 3) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: unknown type %u", i, type);
        uint64_t payload_len = type == 3 ? n : n * 8;
        if (type != 3 && n > (UINT64_MAX / 8)) return fail(err, ABC_ERR_FORMAT, "metadata entry %u: count %llu too large", i, (unsigned long long)n);
        uint64_t key_off = pos + 16, payload_off = key_off + pad8(key_len);
        if (!range_inside(key_off, key_len, off, size) || !range_inside(payload_off, payload_len, off, size))
            return fail(err, ABC_ERR_FORMAT, "metadata entry %u: extends past its section", i);
        meta_entry *m = &wf->meta[i];
        m->key = (const char *)wf->base + key_off;
        m->key_len = key_len;
        m->type = type;
        m->count = n;
        m->payload = wf->base + payload_off;
        for (uint32_t j = 0; j < i; j++)
            if (wf->meta[j].key_len == key_len && !memcmp(wf->meta[j].key, m->key, key_len))
                return fail(err, ABC_ERR_FORMAT, "metadata key '%.*s' appears twice", (int)key_len, m->key);
        pos = payload_off + pad8(payload_len);
        if (pos > end) pos = end; /* padding of the last entry may be absent */
    }
    wf->n_meta = count;
    return ABC_OK;
}

/* Parses the tensor directory [off, off+size) into wf->tensors; data must lie in [data_start, size). */
static abc_status parse_tensor_directory(weight_file *wf, uint64_t off, uint64_t size, uint32_t count,
                                         uint64_t data_start, abc_error *err) {
    if (count > size / 64) return fail(err, ABC_ERR_FORMAT, "tensor directory: %u entries cannot fit in %llu bytes", count, (unsigned long long)size);
    wf->tensors = xcalloc(count, sizeof *wf->tensors);
    if (!wf->tensors) return fail(err, ABC_ERR_NOMEM, "out of memory reading the tensor directory");
    uint64_t pos = off;
    for (uint32_t i = 0; i < count; i++) {
        if (!range_inside(pos, 64, off, size)) return fail(err, ABC_ERR_FORMAT, "tensor entry %u: truncated", i);
        const uint8_t *p = wf->base + pos;
        tensor *t = &wf->tensors[i];
        t->name_len = read_u32le(p);
        t->dtype = read_u32le(p + 4);
        uint32_t ndim = read_u32le(p + 8);
        uint64_t data_off = read_u64le(p + 48), nbytes = read_u64le(p + 56);
        if (t->name_len == 0 || t->name_len > ABC_MAX_NAME || !range_inside(pos + 64, t->name_len, off, size))
            return fail(err, ABC_ERR_FORMAT, "tensor entry %u: bad name length %u", i, t->name_len);
        t->name = (const char *)wf->base + pos + 64;
        int nl = (int)t->name_len;
        if (ndim < 1 || ndim > 4) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': bad rank %u", nl, t->name, ndim);
        if (t->dtype > DT_Q8) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': unknown dtype %u", nl, t->name, t->dtype);
        if (t->dtype == DT_Q8_ROWS_RETIRED)
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': q8 in rows (dtype 5, converters before 2026-12-02) is no longer "
                        "read: convert the checkpoint again", nl, t->name);
        t->ndim = (int)ndim;
        uint64_t elements = 1;
        for (int d = 0; d < 4; d++) {
            uint64_t dim = read_u64le(p + 16 + 8 * d);
            if (dim == 0 || dim > (uint64_t)INT64_MAX || (d >= t->ndim && dim != 1))
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': bad dimension %d (%llu)", nl, t->name, d, (unsigned long long)dim);
            if (elements > UINT64_MAX / dim) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': element count overflows", nl, t->name);
            elements *= dim;
            t->shape[d] = (int64_t)dim;
        }
        size_t esize = dtype_size(t->dtype);
        if (esize && (elements > UINT64_MAX / esize || elements * esize != nbytes))
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': %llu bytes do not match its shape and dtype %s", nl, t->name,
                        (unsigned long long)nbytes, dtype_name(t->dtype));
        if (t->dtype == DT_Q8) {
            uint64_t want = 0;
            if (t->ndim != 2 || t->shape[1] % Q8_BLOCK != 0)
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': q8 needs 2 dimensions with the second a multiple of %d",
                            nl, t->name, Q8_BLOCK);
            if (!q8_nbytes((uint64_t)t->shape[0], (uint64_t)t->shape[1], &want) || want != nbytes)
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': %llu bytes do not match its shape and dtype q8", nl, t->name,
                            (unsigned long long)nbytes);
        }
        if (data_off % ABC_TENSOR_ALIGN) return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': data offset not 64-byte aligned", nl, t->name);
        if (!range_inside(data_off, nbytes, data_start, wf->size - data_start))
            return fail(err, ABC_ERR_FORMAT, "tensor '%.*s': data [%llu, +%llu) lies outside the file's data section", nl, t->name,
                        (unsigned long long)data_off, (unsigned long long)nbytes);
        t->data = wf->base + data_off;
        t->nbytes = (size_t)nbytes;
        for (uint32_t j = 0; j < i; j++)
            if (wf->tensors[j].name_len == t->name_len && !memcmp(wf->tensors[j].name, t->name, t->name_len))
                return fail(err, ABC_ERR_FORMAT, "tensor '%.*s' appears twice", nl, t->name);
        pos += 64 + pad8(t->name_len);
    }
    wf->n_tensors = count;
    return ABC_OK;
}

/* Validates the header and both directories of an in-memory image of a .abc file. */
static abc_status weight_file_parse(weight_file *wf, abc_error *err) {
    if (wf->size < ABC_HEADER_SIZE) return fail(err, ABC_ERR_FORMAT, "file too short (%zu bytes) for a .abc header", wf->size);
    const uint8_t *h = wf->base;
    if (memcmp(h, ABC_FILE_MAGIC, 8) != 0) return fail(err, ABC_ERR_FORMAT, "not a .abc weight file (bad magic)");
    wf->version = read_u32le(h + 8);
    if (wf->version != ABC_FILE_VERSION)
        return fail(err, ABC_ERR_VERSION, "weight file version %u is not supported (this build reads version %u)", wf->version, ABC_FILE_VERSION);
    if (read_u32le(h + 12) != ABC_HEADER_SIZE) return fail(err, ABC_ERR_FORMAT, "bad header size %u", read_u32le(h + 12));
    uint64_t file_size = read_u64le(h + 16);
    if (file_size != wf->size)
        return fail(err, ABC_ERR_FORMAT, "file is %zu bytes but its header says %llu (truncated or padded?)", wf->size, (unsigned long long)file_size);
    uint64_t meta_off = read_u64le(h + 24), meta_size = read_u64le(h + 32);
    uint64_t dir_off = read_u64le(h + 40), dir_size = read_u64le(h + 48);
    uint32_t n_meta = read_u32le(h + 56), n_tensors = read_u32le(h + 60);
    if (meta_off < ABC_HEADER_SIZE || meta_off % 8 || !range_inside(meta_off, meta_size, 0, wf->size))
        return fail(err, ABC_ERR_FORMAT, "metadata section [%llu, +%llu) is outside the file", (unsigned long long)meta_off, (unsigned long long)meta_size);
    if (dir_off < meta_off + meta_size || dir_off % 8 || !range_inside(dir_off, dir_size, 0, wf->size))
        return fail(err, ABC_ERR_FORMAT, "tensor directory [%llu, +%llu) is outside the file", (unsigned long long)dir_off, (unsigned long long)dir_size);
    abc_status st = parse_metadata(wf, meta_off, meta_size, n_meta, err);
    if (st != ABC_OK) return st;
    return parse_tensor_directory(wf, dir_off, dir_size, n_tensors, dir_off + dir_size, err);
}

static abc_status weight_file_open(const char *path, weight_file *wf, abc_error *err) {
    memset(wf, 0, sizeof *wf);
    if (!path) return fail(err, ABC_ERR_INVALID_ARG, "model path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(err, ABC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
        close(fd);
        return fail(err, ABC_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)stt.st_size < ABC_HEADER_SIZE) {
        close(fd);
        return fail(err, ABC_ERR_FORMAT, "'%s' is too short (%lld bytes) to be a .abc file", path, (long long)stt.st_size);
    }
    if ((uint64_t)stt.st_size > SIZE_MAX) {
        close(fd);
        return fail(err, ABC_ERR_TOO_LARGE, "'%s' does not fit in the address space", path);
    }
    void *base = mmap(NULL, (size_t)stt.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return fail(err, ABC_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    wf->base = base;
    wf->size = (size_t)stt.st_size;
    wf->mapped = true;
    abc_status st = weight_file_parse(wf, err);
    if (st != ABC_OK) weight_file_close(wf);
    return st;
}

static void weight_file_close(weight_file *wf) {
    if (!wf) return;
    if (wf->base) {
        if (wf->mapped) munmap((void *)wf->base, wf->size);
        else free((void *)wf->base);
    }
    free(wf->meta);
    free(wf->tensors);
    memset(wf, 0, sizeof *wf);
}

static bool name_equals(const char *s, uint32_t len, const char *name) {
    return strlen(name) == len && memcmp(s, name, len) == 0;
}

/* Linear search: a model has about a thousand tensors and binding happens once at load. */
static const tensor *wf_tensor(const weight_file *wf, const char *name) {
    for (uint32_t i = 0; i < wf->n_tensors; i++)
        if (name_equals(wf->tensors[i].name, wf->tensors[i].name_len, name)) return &wf->tensors[i];
    return NULL;
}

static const meta_entry *wf_meta(const weight_file *wf, const char *key) {
    for (uint32_t i = 0; i < wf->n_meta; i++)
        if (name_equals(wf->meta[i].key, wf->meta[i].key_len, key)) return &wf->meta[i];
    return NULL;
}

static const meta_entry *wf_meta_typed(const weight_file *wf, const char *key, uint32_t type, abc_error *err) {
    static const char *type_names[] = {"", "integer", "float", "string"};
    const meta_entry *m = wf_meta(wf, key);
    if (!m) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing", key);
        return NULL;
    }
    if (m->type != type || (type != 3 && m->count != 1)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is not a single %s", key, type_names[type]);
        return NULL;
    }
    return m;
}

static bool wf_int(const weight_file *wf, const char *key, int64_t *out, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 1, err);
    if (!m) return false;
    *out = (int64_t)read_u64le(m->payload);
    return true;
}

static bool wf_f64(const weight_file *wf, const char *key, double *out, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 2, err);
    if (!m) return false;
    uint64_t bits = read_u64le(m->payload);
    memcpy(out, &bits, sizeof *out);
    return true;
}

static bool wf_str(const weight_file *wf, const char *key, const char **s, size_t *len, abc_error *err) {
    const meta_entry *m = wf_meta_typed(wf, key, 3, err);
    if (!m) return false;
    *s = m->payload;
    *len = (size_t)m->count;
    return true;
}

/* Fixed-length numeric arrays (mrope_section, mean/std): the stored count must equal `count`. */
static bool wf_int_array(const weight_file *wf, const char *key, int64_t *out, size_t count, abc_error *err) {
    const meta_entry *m = wf_meta(wf, key);
    if (!m || m->type != 1 || m->count != count) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing or not %zu integers", key, count);
        return false;
    }
    for (size_t i = 0; i < count; i++) out[i] = (int64_t)read_u64le((const uint8_t *)m->payload + 8 * i);
    return true;
}

static bool wf_f64_array(const weight_file *wf, const char *key, double *out, size_t count, abc_error *err) {
    const meta_entry *m = wf_meta(wf, key);
    if (!m || m->type != 2 || m->count != count) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' is missing or not %zu floats", key, count);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t bits = read_u64le((const uint8_t *)m->payload + 8 * i);
        memcpy(&out[i], &bits, sizeof out[i]);
    }
    return true;
}
