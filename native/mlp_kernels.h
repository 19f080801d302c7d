/* Declarations of every kernel the module exports; each lives in its own .c file. */
#ifndef MLP_KERNELS_H_INCLUDED
#define MLP_KERNELS_H_INCLUDED

#include "mlp_arrow.h"

PyObject* MlpArrayStats(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpJaroWinklerSimilarity(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpLevenshteinSimilarity(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpMatchPairs(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpIcebergBucket(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpDecodeParquetColumn(PyObject* self, PyObject* args, PyObject* kwargs);

/* The output buffer cache (buffer_cache.c). */
int MlpBufferCacheInit(void);
/* `size` bytes as `buffer`'s memory, from the cache (or malloc, when small): 0, or -1 when out
 * of memory (no Python error set). */
int MlpBufferCacheReserve(struct ArrowBuffer* buffer, int64_t size);
PyObject* MlpTrimBufferCache(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpSetBufferCacheLimit(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpBufferCacheInfo(PyObject* self, PyObject* ignored);

#endif
