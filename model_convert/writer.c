/* `.abc` file writer: layout computation, validation of every entry, atomic write. */
#define _POSIX_C_SOURCE 200809L
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_ENTRY_FIXED 64u /* 4 u32 + 4 u64 shape + u64 offset + u64 size */

typedef struct {
    char *key;
    uint32_t type;
    uint64_t count;
    void *payload;
    size_t payload_size;
} meta_entry;

typedef struct {
    char *name;
    uint32_t dtype;
    uint32_t ndim;
    uint64_t shape[4];
    size_t nbytes;
    void *data; /* owned copy, or NULL when produced by fill */
    int (*fill)(void *ctx, void *dst, char *err, size_t errsize); /* the whole tensor at once */
    writer_fill_units_fn fill_units;                              /* or in pieces of whole units */
    uint64_t n_units;
    size_t unit_bytes;
    void *ctx;
    void (*free_ctx)(void *ctx);
    uint64_t offset; /* assigned by writer_write */
    size_t first_job, n_jobs;
} tensor_entry;

struct abc_writer {
    meta_entry *meta;
    size_t n_meta, cap_meta;
    tensor_entry *tensors;
    size_t n_tensors, cap_tensors;
    int threads;
    writer_progress_fn progress;
    void *progress_ctx;
    char error[256];
};

static int werr(abc_writer *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof w->error, fmt, ap);
    va_end(ap);
    return -1;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

size_t writer_dtype_size(uint32_t dtype) {
    switch (dtype) {
    case ABC_FILE_F32: case ABC_FILE_I32: return 4;
    case ABC_FILE_F16: case ABC_FILE_BF16: return 2;
    case ABC_FILE_U8: return 1;
    default: return 0;
    }
}

abc_writer *writer_new(void) {
    abc_writer *w = calloc(1, sizeof *w);
    return w;
}

const char *writer_error(const abc_writer *w) { return w ? w->error : "no writer"; }

static void free_tensor(tensor_entry *t) {
    free(t->name);
    free(t->data);
    if (t->free_ctx) t->free_ctx(t->ctx);
}

void writer_free(abc_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].payload);
    }
    free(w->meta);
    for (size_t i = 0; i < w->n_tensors; i++) free_tensor(&w->tensors[i]);
    free(w->tensors);
    free(w);
}

/* Names and keys are non-empty printable ASCII so that readers can print them safely. */
static int check_name(abc_writer *w, const char *name, const char *what) {
    if (!name || !*name) return werr(w, "empty %s name", what);
    size_t n = strlen(name);
    if (n > 4096) return werr(w, "%s name too long (%zu bytes)", what, n);
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7e) return werr(w, "%s name \"%.80s\" has a non-printable or non-ASCII byte", what, name);
    return 0;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int add_meta(abc_writer *w, const char *key, uint32_t type, uint64_t count, const void *payload, size_t size) {
    if (!w) return -1;
    if (check_name(w, key, "metadata") < 0) return -1;
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) return werr(w, "duplicate metadata key \"%s\"", key);
    if (w->n_meta == UINT32_MAX) return werr(w, "too many metadata entries");
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? w->cap_meta * 2 : 32;
        meta_entry *m = realloc(w->meta, cap * sizeof *m);
        if (!m) return werr(w, "out of memory");
        w->meta = m;
        w->cap_meta = cap;
    }
    meta_entry e = { dup_string(key), type, count, malloc(size ? size : 1), size };
    if (!e.key || !e.payload) {
        free(e.key);
        free(e.payload);
        return werr(w, "out of memory");
    }
    if (size) memcpy(e.payload, payload, size);
    w->meta[w->n_meta++] = e;
    return 0;
}

int writer_add_i64(abc_writer *w, const char *key, const int64_t *v, size_t count) {
    if (!w) return -1;
    if (count == 0 || !v) return werr(w, "metadata \"%s\": empty array", key ? key : "");
    if (count > SIZE_MAX / 8) return werr(w, "metadata \"%s\": too many values", key);
    return add_meta(w, key, ABC_FILE_META_I64, count, v, count * 8);
}

int writer_add_f64(abc_writer *w, const char *key, const double *v, size_t count) {
    if (!w) return -1;
    if (count == 0 || !v) return werr(w, "metadata \"%s\": empty array", key ? key : "");
    if (count > SIZE_MAX / 8) return werr(w, "metadata \"%s\": too many values", key);
    return add_meta(w, key, ABC_FILE_META_F64, count, v, count * 8);
}

int writer_add_str(abc_writer *w, const char *key, const char *s) {
    if (!w) return -1;
    if (!s) return werr(w, "metadata \"%s\": NULL string", key ? key : "");
    size_t n = strlen(s);
    return add_meta(w, key, ABC_FILE_META_STR, n, s, n);
}

static int add_tensor(abc_writer *w, const tensor_entry *proto, const int64_t *shape, const void *data) {
    if (check_name(w, proto->name, "tensor") < 0) return -1;
    const char *name = proto->name;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return werr(w, "duplicate tensor \"%s\"", name);
    if (proto->ndim < 1 || proto->ndim > 4) return werr(w, "tensor \"%s\": %u dimensions (must be 1..4)", name, proto->ndim);
    if (!shape) return werr(w, "tensor \"%s\": no shape", name);
    size_t esize = writer_dtype_size(proto->dtype);
    if (proto->dtype > ABC_FILE_Q4) return werr(w, "tensor \"%s\": unknown dtype %u", name, proto->dtype);
    uint64_t count = 1;
    tensor_entry t = *proto;
    for (int i = 0; i < 4; i++) t.shape[i] = 1;
    for (uint32_t i = 0; i < proto->ndim; i++) {
        if (shape[i] <= 0) return werr(w, "tensor \"%s\": dimension %u is %lld", name, i, (long long)shape[i]);
        if ((uint64_t)shape[i] > UINT64_MAX / count) return werr(w, "tensor \"%s\": element count overflows", name);
        count *= (uint64_t)shape[i];
        t.shape[i] = (uint64_t)shape[i];
    }
    if (esize) {
        if (count > SIZE_MAX / esize || count * esize != proto->nbytes)
            return werr(w, "tensor \"%s\": %zu bytes given, shape needs %llu elements of %zu bytes", name, proto->nbytes,
                        (unsigned long long)count, esize);
    } else if (proto->nbytes == 0) {
        return werr(w, "tensor \"%s\": empty data", name);
    }
    if (w->n_tensors == UINT32_MAX) return werr(w, "too many tensors");
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        tensor_entry *n = realloc(w->tensors, cap * sizeof *n);
        if (!n) return werr(w, "out of memory");
        w->tensors = n;
        w->cap_tensors = cap;
    }
    t.name = dup_string(name);
    if (!t.name) return werr(w, "out of memory");
    if (data) {
        t.data = malloc(t.nbytes);
        if (!t.data) { free(t.name); return werr(w, "out of memory copying tensor \"%s\"", name); }
        memcpy(t.data, data, t.nbytes);
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
}

int writer_add_tensor(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes) {
    if (!w) return -1;
    if (!data) return werr(w, "tensor \"%s\": no data", name ? name : "");
    tensor_entry proto = { .name = (char *)name, .dtype = dtype, .ndim = (uint32_t)(ndim < 0 ? 0 : ndim), .nbytes = nbytes };
    return add_tensor(w, &proto, shape, data);
}

int writer_add_tensor_fn(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, size_t nbytes,
                         int (*fill)(void *ctx, void *dst, char *err, size_t errsize), void *ctx, void (*free_ctx)(void *ctx)) {
    /* the writer owns ctx from here on, even when the call fails */
    if (!w || !fill) {
        if (free_ctx) free_ctx(ctx);
        return w ? werr(w, "tensor \"%s\": no fill function", name ? name : "") : -1;
    }
    tensor_entry proto = { .name = (char *)name, .dtype = dtype, .ndim = (uint32_t)(ndim < 0 ? 0 : ndim), .nbytes = nbytes,
                           .fill = fill, .ctx = ctx, .free_ctx = free_ctx };
    if (add_tensor(w, &proto, shape, NULL) < 0) {
        if (free_ctx) free_ctx(ctx);
        return -1;
    }
    return 0;
}

int writer_add_tensor_units(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, uint64_t n_units,
                            size_t unit_bytes, writer_fill_units_fn fill, void *ctx, void (*free_ctx)(void *ctx)) {
    /* the writer owns ctx from here on, even when the call fails */
    if (!w || !fill || n_units == 0 || unit_bytes == 0 || n_units > SIZE_MAX / unit_bytes) {
        if (free_ctx) free_ctx(ctx);
        return w ? werr(w, "tensor \"%s\": no fill function or no units", name ? name : "") : -1;
    }
    tensor_entry proto = { .name = (char *)name, .dtype = dtype, .ndim = (uint32_t)(ndim < 0 ? 0 : ndim), .nbytes = (size_t)n_units * unit_bytes,
                           .fill_units = fill, .n_units = n_units, .unit_bytes = unit_bytes, .ctx = ctx, .free_ctx = free_ctx };
    if (add_tensor(w, &proto, shape, NULL) < 0) {
        if (free_ctx) free_ctx(ctx);
        return -1;
    }
    return 0;
}

void writer_set_threads(abc_writer *w, int threads) {
    if (w) w->threads = threads;
}

void writer_set_progress(abc_writer *w, writer_progress_fn fn, void *ctx) {
    if (!w) return;
    w->progress = fn;
    w->progress_ctx = ctx;
}

/* ---- serialisation ---- */

typedef struct {
    FILE *f;
    uint64_t pos;
    int failed;
} out_stream;

static void put_bytes(out_stream *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->failed = 1;
    o->pos += n;
}

static void put_u32(out_stream *o, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(o, b, 4);
}

static void put_u64(out_stream *o, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(o, b, 8);
}

static void pad_to(out_stream *o, uint64_t alignment) {
    static const unsigned char zeros[64];
    uint64_t target = align_up(o->pos, alignment);
    put_bytes(o, zeros, (size_t)(target - o->pos));
}

static uint64_t meta_entry_size(const meta_entry *m) {
    return 16 + align_up(strlen(m->key), 8) + align_up(m->payload_size, 8);
}

static uint64_t dir_entry_size(const tensor_entry *t) { return DIR_ENTRY_FIXED + align_up(strlen(t->name), 8); }

/* Host values are written in little-endian regardless of the host's byte order. */
static void put_payload(out_stream *o, const meta_entry *m) {
    if (m->type == ABC_FILE_META_STR) { put_bytes(o, m->payload, m->payload_size); return; }
    for (uint64_t i = 0; i < m->count; i++) {
        uint64_t bits;
        memcpy(&bits, (const char *)m->payload + i * 8, 8);
        put_u64(o, bits);
    }
}

/* ---- tensor data: produced in pieces by worker threads, written in file order ----
 *
 * Piece j goes into slot j % n_slots, and a worker starts piece j only once piece j - n_slots has been
 * written: memory is n_slots pieces (plus each fill's own scratch) however large the model. Reading
 * and converting (workers) overlap with writing (this thread). The first failing piece in file order
 * decides the error, as a sequential run would. */

#define PIECE_BYTES ((size_t)4 << 20) /* output bytes per piece, unless one unit is larger */

typedef struct {
    size_t tensor;
    uint64_t unit0, units;
    size_t bytes;
} piece_job;

typedef struct {
    unsigned char *buf;   /* slot_cap bytes, allocated on first use */
    unsigned char *own;   /* a whole-tensor fill larger than slot_cap */
    int done, rc;
    char err[512];
} piece_slot;

typedef struct {
    abc_writer *w;
    piece_job *jobs;
    size_t n_jobs;
    piece_slot *slots;
    size_t n_slots, slot_cap;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    size_t next, written;
    int stop;
} pipeline;

static void run_job(pipeline *p, size_t j) {
    const piece_job *job = &p->jobs[j];
    const tensor_entry *t = &p->w->tensors[job->tensor];
    piece_slot *s = &p->slots[j % p->n_slots];
    unsigned char *dst;
    s->err[0] = '\0';
    if (job->bytes > p->slot_cap) {
        dst = s->own = malloc(job->bytes);
    } else {
        if (!s->buf) s->buf = malloc(p->slot_cap);
        dst = s->buf;
    }
    if (!dst) {
        snprintf(s->err, sizeof s->err, "out of memory (a buffer of %zu bytes)", job->bytes);
        s->rc = -1;
        return;
    }
    s->rc = t->fill_units ? t->fill_units(t->ctx, dst, job->unit0, job->units, s->err, sizeof s->err) : t->fill(t->ctx, dst, s->err, sizeof s->err);
}

static void *worker_main(void *arg) {
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next < p->n_jobs && p->next >= p->written + p->n_slots) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop || p->next >= p->n_jobs) break;
        size_t j = p->next++;
        pthread_mutex_unlock(&p->mu);
        run_job(p, j);
        pthread_mutex_lock(&p->mu);
        p->slots[j % p->n_slots].done = 1;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Splits every streamed tensor into pieces of whole units of about PIECE_BYTES. */
static int plan_jobs(abc_writer *w, pipeline *p) {
    size_t n = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        tensor_entry *t = &w->tensors[i];
        t->first_job = n;
        t->n_jobs = 0;
        if (t->fill_units) {
            uint64_t per = t->unit_bytes >= PIECE_BYTES ? 1 : PIECE_BYTES / t->unit_bytes;
            t->n_jobs = (size_t)((t->n_units + per - 1) / per);
        } else if (t->fill) {
            t->n_jobs = 1;
        }
        n += t->n_jobs;
    }
    p->jobs = malloc((n ? n : 1) * sizeof *p->jobs);
    if (!p->jobs) return -1;
    p->n_jobs = n;
    p->slot_cap = PIECE_BYTES;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const tensor_entry *t = &w->tensors[i];
        if (t->fill_units) {
            uint64_t per = t->unit_bytes >= PIECE_BYTES ? 1 : PIECE_BYTES / t->unit_bytes;
            for (size_t k = 0; k < t->n_jobs; k++) {
                piece_job *job = &p->jobs[t->first_job + k];
                job->tensor = i;
                job->unit0 = k * per;
                job->units = t->n_units - job->unit0 < per ? t->n_units - job->unit0 : per;
                job->bytes = (size_t)job->units * t->unit_bytes;
                if (job->bytes > p->slot_cap) p->slot_cap = job->bytes;
            }
        } else if (t->fill) {
            p->jobs[t->first_job] = (piece_job){ i, 0, 1, t->nbytes };
        }
    }
    return 0;
}

static int write_tensor_data(abc_writer *w, out_stream *o, uint64_t file_size, char *err, size_t errsize) {
    pipeline p;
    memset(&p, 0, sizeof p);
    p.w = w;
    if (plan_jobs(w, &p) < 0) { snprintf(err, errsize, "out of memory"); return -1; }
    const int threads = w->threads > 1 ? w->threads : 1;
    p.n_slots = 2 * (size_t)threads + 2;
    p.slots = calloc(p.n_slots, sizeof *p.slots);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int n_workers = 0, rc = 0;
    if (!p.slots || !tid) {
        snprintf(err, errsize, "out of memory");
        rc = -1;
        goto done;
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.work_cv, NULL);
    pthread_cond_init(&p.done_cv, NULL);
    /* fewer workers when threads cannot be created; none: this thread fills each piece itself */
    while (n_workers < threads && p.n_jobs > 0 && pthread_create(&tid[n_workers], NULL, worker_main, &p) == 0) n_workers++;
    for (size_t i = 0; i < w->n_tensors && rc == 0; i++) {
        tensor_entry *t = &w->tensors[i];
        pad_to(o, ABC_FILE_TENSOR_ALIGN);
        if (!t->fill && !t->fill_units) {
            put_bytes(o, t->data, t->nbytes);
            if (w->progress) w->progress(w->progress_ctx, i, w->n_tensors, o->pos, file_size);
            continue;
        }
        for (size_t j = t->first_job; j < t->first_job + t->n_jobs && rc == 0; j++) {
            piece_slot *s = &p.slots[j % p.n_slots];
            if (n_workers == 0) {
                run_job(&p, j);
            } else {
                pthread_mutex_lock(&p.mu);
                while (!s->done) pthread_cond_wait(&p.done_cv, &p.mu);
                pthread_mutex_unlock(&p.mu);
            }
            if (s->rc != 0) {
                snprintf(err, errsize, "tensor %s: %s", t->name, s->err[0] ? s->err : "could not produce data");
                rc = -1;
            } else {
                put_bytes(o, s->own ? s->own : s->buf, p.jobs[j].bytes);
                if (o->failed) {
                    snprintf(err, errsize, "write error: %s", strerror(errno));
                    rc = -1;
                }
            }
            free(s->own);
            s->own = NULL;
            pthread_mutex_lock(&p.mu);
            s->done = 0;
            p.written++;
            if (rc != 0) p.stop = 1;
            pthread_cond_broadcast(&p.work_cv);
            pthread_mutex_unlock(&p.mu);
            if (rc == 0 && w->progress) w->progress(w->progress_ctx, i, w->n_tensors, o->pos, file_size);
        }
    }
    if (n_workers > 0) {
        pthread_mutex_lock(&p.mu);
        p.stop = 1;
        pthread_cond_broadcast(&p.work_cv);
        pthread_mutex_unlock(&p.mu);
    }
    for (int i = 0; i < n_workers; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.work_cv);
    pthread_cond_destroy(&p.done_cv);
done:
    for (size_t i = 0; p.slots && i < p.n_slots; i++) {
        free(p.slots[i].buf);
        free(p.slots[i].own);
    }
    free(p.slots);
    free(p.jobs);
    free(tid);
    return rc;
}

static int write_all(abc_writer *w, FILE *f, char *err, size_t errsize) {
    uint64_t meta_size = 0, dir_size = 0;
    for (size_t i = 0; i < w->n_meta; i++) meta_size += meta_entry_size(&w->meta[i]);
    for (size_t i = 0; i < w->n_tensors; i++) dir_size += dir_entry_size(&w->tensors[i]);
    uint64_t meta_offset = ABC_FILE_HEADER_SIZE;
    uint64_t dir_offset = align_up(meta_offset + meta_size, 8);
    uint64_t pos = dir_offset + dir_size;
    for (size_t i = 0; i < w->n_tensors; i++) {
        tensor_entry *t = &w->tensors[i];
        t->offset = align_up(pos, ABC_FILE_TENSOR_ALIGN);
        pos = t->offset + t->nbytes;
    }
    uint64_t file_size = pos;

    out_stream o = { f, 0, 0 };
    put_bytes(&o, ABC_FILE_MAGIC, 8);
    put_u32(&o, ABC_FILE_VERSION);
    put_u32(&o, ABC_FILE_HEADER_SIZE);
    put_u64(&o, file_size);
    put_u64(&o, meta_offset);
    put_u64(&o, meta_size);
    put_u64(&o, dir_offset);
    put_u64(&o, dir_size);
    put_u32(&o, (uint32_t)w->n_meta);
    put_u32(&o, (uint32_t)w->n_tensors);
    for (size_t i = 0; i < w->n_meta; i++) {
        const meta_entry *m = &w->meta[i];
        size_t key_len = strlen(m->key);
        put_u32(&o, (uint32_t)key_len);
        put_u32(&o, m->type);
        put_u64(&o, m->count);
        put_bytes(&o, m->key, key_len);
        pad_to(&o, 8);
        put_payload(&o, m);
        pad_to(&o, 8);
    }
    pad_to(&o, 8);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const tensor_entry *t = &w->tensors[i];
        size_t name_len = strlen(t->name);
        put_u32(&o, (uint32_t)name_len);
        put_u32(&o, t->dtype);
        put_u32(&o, t->ndim);
        put_u32(&o, 0);
        for (int d = 0; d < 4; d++) put_u64(&o, t->shape[d]);
        put_u64(&o, t->offset);
        put_u64(&o, t->nbytes);
        put_bytes(&o, t->name, name_len);
        pad_to(&o, 8);
    }
    if (o.failed) { snprintf(err, errsize, "write error: %s", strerror(errno)); return -1; }

    if (write_tensor_data(w, &o, file_size, err, errsize) < 0) return -1;
    if (o.failed) { snprintf(err, errsize, "write error: %s", strerror(errno)); return -1; }
    if (o.pos != file_size) { snprintf(err, errsize, "internal error: wrote %llu bytes, expected %llu",
                                       (unsigned long long)o.pos, (unsigned long long)file_size); return -1; }
    return 0;
}

int writer_write(abc_writer *w, const char *path, char *err, size_t errsize) {
    char dummy[1];
    if (!err || errsize == 0) { err = dummy; errsize = sizeof dummy; }
    err[0] = '\0';
    if (!w || !path || !*path) { snprintf(err, errsize, "no writer or output path"); return -1; }
    size_t tmp_size = strlen(path) + 32;
    char *tmp = malloc(tmp_size);
    if (!tmp) { snprintf(err, errsize, "out of memory"); return -1; }
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, tmp_size, "%s.tmp%ld.%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        snprintf(err, errsize, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        snprintf(err, errsize, "cannot open %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    int rc = write_all(w, f, err, errsize);
    if (fflush(f) != 0 && rc == 0) { snprintf(err, errsize, "write error on %s: %s", tmp, strerror(errno)); rc = -1; }
    if (rc == 0 && fsync(fileno(f)) != 0) { snprintf(err, errsize, "fsync %s: %s", tmp, strerror(errno)); rc = -1; }
    if (fclose(f) != 0 && rc == 0) { snprintf(err, errsize, "close %s: %s", tmp, strerror(errno)); rc = -1; }
    if (rc == 0 && rename(tmp, path) != 0) { snprintf(err, errsize, "cannot rename %s to %s: %s", tmp, path, strerror(errno)); rc = -1; }
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}
