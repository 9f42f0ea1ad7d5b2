/* npy.h — reading and writing NumPy .npy files (format versions 1.0–3.0, C order).
 *
 * Used by the `abc` command line (--dump, -o, --input-ids, --pixel-values) and by the test tools.
 * Only the plain numeric dtypes the pipeline produces are supported: float32, float64, int32, int64,
 * uint8. Files are written in the host's byte order (marked as such in the header); files of the other
 * byte order are byte-swapped on reading.
 */
#ifndef ABC_NPY_H
#define ABC_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef enum { NPY_F32, NPY_F64, NPY_I32, NPY_I64, NPY_U8 } npy_dtype;

typedef struct {
    npy_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;  /* product of shape (1 for a 0-d array) */
    void *data;    /* count elements in host byte order, malloc'ed; release with npy_free */
} npy_array;

size_t npy_dtype_size(npy_dtype dtype);
const char *npy_dtype_name(npy_dtype dtype); /* "float32", ... */

/* Both return 0 on success; on failure -1 with a message (naming the file) in err[errlen]. */
int npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
              char *err, size_t errlen);
int npy_read(const char *path, npy_array *out, char *err, size_t errlen);
void npy_free(npy_array *array);

/* Element i as a double (any dtype). */
double npy_get(const npy_array *array, size_t i);

#endif
