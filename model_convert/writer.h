/* Builds a `.abc` weight file (FORMAT.md): collect metadata and tensors, then write them all at
 * once. Large tensors are produced on demand by a fill callback while the file is written, so the
 * converter never holds a whole model in memory. */
#ifndef ABC_CONVERT_WRITER_H
#define ABC_CONVERT_WRITER_H
#include <stddef.h>
#include <stdint.h>

#include "abc.h" /* the format's constants and dtype codes (ABC_FILE_*) */


typedef struct abc_writer abc_writer;
abc_writer *writer_new(void);
/* copies data (small tensors) */
int writer_add_tensor(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes);
/* large tensors: data produced at write time by fill(ctx, dst) into a buffer of nbytes (streaming, so a 7B model is never held in memory twice) */
int writer_add_tensor_fn(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, size_t nbytes, int (*fill)(void *ctx, void *dst, char *err, size_t errsize), void *ctx, void (*free_ctx)(void *ctx));
/* large tensors in pieces: the data is n_units units of unit_bytes each (rows, or strips of rows);
 * fill(ctx, dst, unit0, units) produces units [unit0, unit0 + units) into dst. Pieces are produced by
 * worker threads, several at once (fill must allow concurrent calls on disjoint pieces), and written
 * in order, so memory stays bounded by a few pieces per thread whatever the tensor's size. */
typedef int (*writer_fill_units_fn)(void *ctx, void *dst, uint64_t unit0, uint64_t units, char *err, size_t errsize);
int writer_add_tensor_units(abc_writer *w, const char *name, uint32_t dtype, int ndim, const int64_t *shape, uint64_t n_units,
                            size_t unit_bytes, writer_fill_units_fn fill, void *ctx, void (*free_ctx)(void *ctx));
/* Worker threads producing the tensors' data while the file is written (default 1; values < 1 mean 1). */
void writer_set_threads(abc_writer *w, int threads);
/* Called on the writing thread after each piece: tensor index (0-based) being written, the tensor
 * count, bytes of the file written so far and in all. */
typedef void (*writer_progress_fn)(void *ctx, size_t tensor, size_t n_tensors, uint64_t done, uint64_t total);
void writer_set_progress(abc_writer *w, writer_progress_fn fn, void *ctx);
int writer_add_i64(abc_writer *w, const char *key, const int64_t *v, size_t count);
int writer_add_f64(abc_writer *w, const char *key, const double *v, size_t count);
int writer_add_str(abc_writer *w, const char *key, const char *s);
int writer_write(abc_writer *w, const char *path, char *err, size_t errsize); /* writes atomically: temp file + rename */
void writer_free(abc_writer *w);

/* All functions return 0 on success, -1 on error. After a failed writer_add_*, this says why
 * (duplicate name, bad shape, size mismatch, out of memory). Never NULL. */
const char *writer_error(const abc_writer *w);
/* Element size of a dtype (0 for q8 or unknown codes). */
size_t writer_dtype_size(uint32_t dtype);

#endif
