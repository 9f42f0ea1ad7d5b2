/* safetensors reader: validates the whole header up front (length, JSON, dtypes, shapes, offsets,
 * exact coverage of the data section) so that a file whose header lies is refused with a message
 * naming the tensor, then reads tensors on demand with pread (nothing is held in memory). */
#define _POSIX_C_SOURCE 200809L
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The safetensors format caps the header at 100 MB. */
#define ST_MAX_HEADER (100u << 20)

const char *st_dtype_name(st_dtype d) {
    switch (d) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    }
    return "?";
}

static size_t st_dtype_size(st_dtype d) { return d == ST_F32 ? 4 : 2; }

uint64_t st_numel(const st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

static int parse_dtype(const char *s, st_dtype *out) {
    if (strcmp(s, "F32") == 0) *out = ST_F32;
    else if (strcmp(s, "F16") == 0) *out = ST_F16;
    else if (strcmp(s, "BF16") == 0) *out = ST_BF16;
    else return -1;
    return 0;
}

static int read_exact(int fd, void *dst, size_t n, uint64_t offset) {
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return 0;
}

static void format_shape(const st_tensor *t, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < t->ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* One header entry: {"dtype": "...", "shape": [...], "data_offsets": [begin, end]}. */
static int parse_entry(const char *path, const char *name, const json_value *v, uint64_t data_start,
                       uint64_t data_size, st_tensor *t, char *err, size_t errsize) {
    if (v->type != JSON_OBJECT) return cv_fail(err, errsize, "%s: tensor %s: header entry is not an object", path, name);
    const json_value *dt = json_get(v, "dtype"), *shape = json_get(v, "shape"), *offs = json_get(v, "data_offsets");
    if (!dt || dt->type != JSON_STRING) return cv_fail(err, errsize, "%s: tensor %s: missing \"dtype\"", path, name);
    if (parse_dtype(dt->string, &t->dtype) < 0)
        return cv_fail(err, errsize, "%s: tensor %s has dtype %.20s; only F32, F16 and BF16 are supported", path, name, dt->string);
    if (!shape || shape->type != JSON_ARRAY) return cv_fail(err, errsize, "%s: tensor %s: missing \"shape\" array", path, name);
    if (shape->n_items > ST_MAX_DIMS) return cv_fail(err, errsize, "%s: tensor %s has %zu dimensions (at most %d supported)", path, name, shape->n_items, ST_MAX_DIMS);
    t->ndim = (int)shape->n_items;
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d;
        if (cv_json_int(&shape->items[i], 0, INT64_C(1) << 40, &d) < 0)
            return cv_fail(err, errsize, "%s: tensor %s: shape entry %d is not a valid dimension", path, name, i);
        t->shape[i] = d;
        if (d != 0 && numel > UINT64_MAX / 4 / (uint64_t)d)
            return cv_fail(err, errsize, "%s: tensor %s: element count overflows", path, name);
        numel *= (uint64_t)d;
    }
    if (!offs || offs->type != JSON_ARRAY || offs->n_items != 2)
        return cv_fail(err, errsize, "%s: tensor %s: \"data_offsets\" must be [begin, end]", path, name);
    int64_t begin, end;
    if (cv_json_int(&offs->items[0], 0, INT64_C(1) << 53, &begin) < 0 || cv_json_int(&offs->items[1], 0, INT64_C(1) << 53, &end) < 0)
        return cv_fail(err, errsize, "%s: tensor %s: data_offsets are not non-negative integers", path, name);
    if (end < begin) return cv_fail(err, errsize, "%s: tensor %s: data_offsets [%lld, %lld) end before they begin", path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return cv_fail(err, errsize, "%s: tensor %s: data_offsets [%lld, %lld) run past the end of the file (data section is %llu bytes)",
                       path, name, (long long)begin, (long long)end, (unsigned long long)data_size);
    uint64_t need = numel * st_dtype_size(t->dtype);
    if ((uint64_t)(end - begin) != need) {
        char s[160];
        format_shape(t, s, sizeof s);
        return cv_fail(err, errsize, "%s: tensor %s: shape %s of %s needs %llu bytes but data_offsets span %llu", path, name, s,
                       dt->string, (unsigned long long)need, (unsigned long long)(end - begin));
    }
    t->offset = data_start + (uint64_t)begin;
    t->nbytes = need;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* The format requires the tensors to tile the data section exactly (no gaps, no overlaps), which
 * also catches headers that alias two tensors onto the same bytes. */
static int check_coverage(const char *path, st_tensor *ts, size_t n, uint64_t data_start, uint64_t data_size,
                          char *err, size_t errsize) {
    if (n == 0) {
        if (data_size != 0) return cv_fail(err, errsize, "%s: %llu data bytes but no tensors in the header", path, (unsigned long long)data_size);
        return 0;
    }
    const st_tensor **order = malloc(n * sizeof *order);
    if (!order) return cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; i < n; i++) order[i] = &ts[i];
    qsort(order, n, sizeof *order, cmp_offset);
    uint64_t pos = data_start;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (order[i]->offset < pos)
            rc = cv_fail(err, errsize, "%s: tensor %s: data overlaps the previous tensor's", path, order[i]->name);
        else if (order[i]->offset > pos)
            rc = cv_fail(err, errsize, "%s: tensor %s: gap of %llu bytes before its data", path, order[i]->name,
                         (unsigned long long)(order[i]->offset - pos));
        pos = order[i]->offset + order[i]->nbytes;
    }
    if (rc == 0 && pos != data_start + data_size)
        rc = cv_fail(err, errsize, "%s: %llu bytes after the last tensor's data", path, (unsigned long long)(data_start + data_size - pos));
    free(order);
    return rc;
}

static int grow_tensors(st_set *set, size_t extra) {
    st_tensor *n = realloc(set->tensors, (set->n_tensors + extra) * sizeof *n);
    if (!n) return -1;
    set->tensors = n;
    return 0;
}

int st_add_file(st_set *set, const char *path, char *err, size_t errsize) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cv_fail(err, errsize, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return cv_fail(err, errsize, "%s is not a regular file", path); }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char lenbuf[8];
    if (size < 8 || read_exact(fd, lenbuf, 8, 0) < 0) {
        close(fd);
        return cv_fail(err, errsize, "%s: too short for a safetensors file (%llu bytes)", path, (unsigned long long)size);
    }
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | lenbuf[i];
    if (header_len > size - 8) {
        close(fd);
        return cv_fail(err, errsize, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                       (unsigned long long)header_len, (unsigned long long)size);
    }
    if (header_len > ST_MAX_HEADER || header_len < 2) {
        close(fd);
        return cv_fail(err, errsize, "%s: implausible header length %llu", path, (unsigned long long)header_len);
    }
    char *header = malloc((size_t)header_len);
    if (!header) { close(fd); return cv_fail(err, errsize, "out of memory"); }
    if (read_exact(fd, header, (size_t)header_len, 8) < 0) {
        free(header);
        close(fd);
        return cv_fail(err, errsize, "%s: cannot read header", path);
    }
    /* the format allows trailing spaces as padding of the header */
    size_t hl = (size_t)header_len;
    while (hl > 0 && header[hl - 1] == ' ') hl--;
    char jerr[256];
    json_value *root = json_parse(header, hl, jerr, sizeof jerr);
    free(header);
    if (!root) { close(fd); return cv_fail(err, errsize, "%s: header is not valid JSON: %s", path, jerr); }
    if (root->type != JSON_OBJECT) {
        json_free(root);
        close(fd);
        return cv_fail(err, errsize, "%s: header is not a JSON object", path);
    }

    uint64_t data_start = 8 + header_len, data_size = size - data_start;
    size_t first = set->n_tensors;
    int rc = 0;
    st_file *files = realloc(set->files, (set->n_files + 1) * sizeof *files);
    if (!files || grow_tensors(set, root->n_items) < 0) rc = cv_fail(err, errsize, "out of memory");
    if (files) set->files = files;
    if (rc == 0) {
        char *p = cv_strdup(path);
        if (!p) rc = cv_fail(err, errsize, "out of memory");
        else {
            set->files[set->n_files] = (st_file){ p, fd, size };
            set->n_files++;
            fd = -1;
        }
    }
    for (size_t i = 0; rc == 0 && i < root->n_items; i++) {
        const char *name = root->keys[i];
        if (strcmp(name, "__metadata__") == 0) continue;
        if (strlen(name) != root->key_lens[i] || root->key_lens[i] == 0)
            { rc = cv_fail(err, errsize, "%s: tensor name with a NUL byte or empty", path); break; }
        st_tensor t = {0};
        if (parse_entry(path, name, &root->items[i], data_start, data_size, &t, err, errsize) < 0) { rc = -1; break; }
        t.name = cv_strdup(name);
        if (!t.name) { rc = cv_fail(err, errsize, "out of memory"); break; }
        t.file = (int)set->n_files - 1;
        set->tensors[set->n_tensors++] = t;
    }
    if (rc == 0)
        rc = check_coverage(path, set->tensors + first, set->n_tensors - first, data_start, data_size, err, errsize);
    json_free(root);
    if (fd >= 0) close(fd);
    return rc;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int check_unique_names(const st_set *set, const char *what, char *err, size_t errsize) {
    if (set->n_tensors < 2) return 0;
    const st_tensor **order = malloc(set->n_tensors * sizeof *order);
    if (!order) return cv_fail(err, errsize, "out of memory");
    for (size_t i = 0; i < set->n_tensors; i++) order[i] = &set->tensors[i];
    qsort(order, set->n_tensors, sizeof *order, cmp_name);
    int rc = 0;
    for (size_t i = 1; i < set->n_tensors && rc == 0; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0)
            rc = cv_fail(err, errsize, "%s: tensor %s appears in both %s and %s", what, order[i]->name,
                         set->files[order[i - 1]->file].path, set->files[order[i]->file].path);
    free(order);
    return rc;
}

static int valid_shard_name(const char *s) {
    return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL && strchr(s, '\\') == NULL;
}

static int open_sharded(st_set *set, const char *dir, const char *index_path, char *err, size_t errsize) {
    json_value *idx = cv_read_json(index_path, err, errsize);
    if (!idx) return -1;
    const json_value *map = json_get(idx, "weight_map");
    int rc = 0;
    if (!map || map->type != JSON_OBJECT || map->n_items == 0)
        rc = cv_fail(err, errsize, "%s: no \"weight_map\" object", index_path);
    /* open each distinct shard once, in the order of first mention */
    for (size_t i = 0; rc == 0 && i < map->n_items; i++) {
        const json_value *f = &map->items[i];
        if (f->type != JSON_STRING || !valid_shard_name(f->string)) {
            rc = cv_fail(err, errsize, "%s: tensor %s: invalid shard file name", index_path, map->keys[i]);
            break;
        }
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(map->items[j].string, f->string) == 0;
        if (seen) continue;
        char *path = cv_path_join(dir, f->string);
        if (!path) { rc = cv_fail(err, errsize, "out of memory"); break; }
        rc = st_add_file(set, path, err, errsize);
        free(path);
    }
    if (rc == 0) rc = check_unique_names(set, dir, err, errsize);
    for (size_t i = 0; rc == 0 && i < map->n_items; i++) {
        const st_tensor *t = st_find(set, map->keys[i]);
        const char *want = map->items[i].string;
        const char *have = t ? strrchr(set->files[t->file].path, '/') : NULL;
        have = have ? have + 1 : t ? set->files[t->file].path : NULL;
        if (!t) rc = cv_fail(err, errsize, "%s lists tensor %s in %s, but no shard has it", index_path, map->keys[i], want);
        else if (strcmp(have, want) != 0)
            rc = cv_fail(err, errsize, "%s lists tensor %s in %s, but it is in %s", index_path, map->keys[i], want, have);
    }
    json_free(idx);
    return rc;
}

int st_open_checkpoint(st_set *set, const char *dir, char *err, size_t errsize) {
    char *index = cv_path_join(dir, "model.safetensors.index.json");
    char *single = cv_path_join(dir, "model.safetensors");
    int rc;
    if (!index || !single) rc = cv_fail(err, errsize, "out of memory");
    else if (cv_file_exists(index)) rc = open_sharded(set, dir, index, err, errsize);
    else if (cv_file_exists(single)) rc = st_add_file(set, single, err, errsize);
    else rc = cv_fail(err, errsize, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
    free(index);
    free(single);
    return rc;
}

const st_tensor *st_find(const st_set *set, const char *name) {
    for (size_t i = 0; i < set->n_tensors; i++)
        if (strcmp(set->tensors[i].name, name) == 0) return &set->tensors[i];
    return NULL;
}

#define READ_CHUNK (1u << 20) /* elements per pread */

int st_read_f32_range(const st_set *set, const st_tensor *t, uint64_t first, uint64_t count, float *dst, char *err, size_t errsize) {
    const st_file *f = &set->files[t->file];
    if (first > st_numel(t) || count > st_numel(t) - first)
        return cv_fail(err, errsize, "internal error: element range outside tensor %s", t->name);
    if (t->dtype == ST_F32) {
        /* the converter only runs on little-endian hosts (checked in main), like the file format */
        if (count && read_exact(f->fd, dst, (size_t)count * 4, t->offset + first * 4) < 0)
            return cv_fail(err, errsize, "%s: cannot read tensor %s (file truncated?)", f->path, t->name);
        return 0;
    }
    uint16_t *buf = malloc((count < READ_CHUNK ? (size_t)count : READ_CHUNK) * 2 + 2);
    if (!buf) return cv_fail(err, errsize, "out of memory");
    for (uint64_t done = 0; done < count;) {
        size_t k = count - done < READ_CHUNK ? (size_t)(count - done) : READ_CHUNK;
        if (read_exact(f->fd, buf, k * 2, t->offset + (first + done) * 2) < 0) {
            free(buf);
            return cv_fail(err, errsize, "%s: cannot read tensor %s (file truncated?)", f->path, t->name);
        }
        const unsigned char *b = (const unsigned char *)buf;
        if (t->dtype == ST_BF16) { /* the upper half of a float32: a shift (this loop vectorises) */
            for (size_t i = 0; i < k; i++) {
                const uint32_t bits = (uint32_t)(b[2 * i] | b[2 * i + 1] << 8) << 16;
                memcpy(&dst[done + i], &bits, 4);
            }
        } else {
            for (size_t i = 0; i < k; i++) dst[done + i] = abc_f16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
        }
        done += k;
    }
    free(buf);
    return 0;
}

int st_read_f32(const st_set *set, const st_tensor *t, float *dst, char *err, size_t errsize) {
    return st_read_f32_range(set, t, 0, st_numel(t), dst, err, errsize);
}

void st_close(st_set *set) {
    for (size_t i = 0; i < set->n_files; i++) {
        if (set->files[i].fd >= 0) close(set->files[i].fd);
        free(set->files[i].path);
    }
    for (size_t i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    free(set->files);
    free(set->tensors);
    memset(set, 0, sizeof *set);
}
